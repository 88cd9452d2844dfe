"""The signer's wiring: settings → key backend and ledger → SignerService → App."""

from __future__ import annotations

import asyncio
import logging

from services.common.app import CannotStart
from services.common.errors import AgentFactoryError
from services.common.lifecycle import App
from services.common.logs import log_event
from services.common.telemetry import Telemetry
from services.signer.ledger import KeyLedger
from services.signer.local_backend import LocalKeyBackend
from services.signer.service import KeyBackend, SignerService
from services.signer.servicer import add_to_server
from services.signer.settings import SignerSettings
from services.signer.vault_backend import VaultKeyBackend

log = logging.getLogger("services.signer")


def build_backend(settings: SignerSettings) -> KeyBackend:
    if settings.vault is not None:
        vault = settings.vault
        return VaultKeyBackend(
            vault.addr, vault.token, settings.key_name, mount=vault.mount, timeout=vault.timeout_seconds
        )
    return LocalKeyBackend(settings.data_dir, settings.key_name)


async def build(settings: SignerSettings, telemetry: Telemetry) -> App:
    """The signer calls no upstream, so `telemetry` only reaches its server (through the kit)."""
    try:
        backend = build_backend(settings)
        ledger = KeyLedger(settings.data_dir / "ledger" / f"{backend.key_id}.json", backend.key_id)
        service = SignerService(backend, key_cache_seconds=settings.key_cache_seconds, ledger=ledger)
        # Open the key store before listening: a signer that cannot sign safely must not look healthy.
        keys = await service.start()
    except AgentFactoryError as exc:
        raise CannotStart(exc.message) from exc
    log_event(log, "signer ready", backend=service.backend.describe(), key_id=keys.key_id,
              min_version=keys.min_version, latest_version=keys.latest_version)  # fmt: skip
    stopping = asyncio.Event()

    async def refresh_keys() -> None:
        # Key-set watchers hear this process's own rotations at once; this re-read brings them another
        # replica's (several signers on one Vault key) within AF_SIGNER_KEY_CACHE_SECONDS.
        await service.refresh_every(settings.key_cache_seconds, stopping)

    return App(
        servicers=[lambda server: add_to_server(server, service)],
        background=[refresh_keys],
        close=[service.close],
        stopping=stopping,
    )
