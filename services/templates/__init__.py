"""The trust domain shared by registry, signer and executor: the manifest model, its canonical bytes,
policy, and signature checks. Never imports grpc or generated stubs."""
