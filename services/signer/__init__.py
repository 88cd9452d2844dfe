"""Signer service: key custody and template signatures (agentfactory.signer.v1.SignerService)."""
