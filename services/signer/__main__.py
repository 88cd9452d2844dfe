"""Composition root: settings -> key backend -> signer service -> gRPC server. The only place env is read."""

from __future__ import annotations

import asyncio
import logging
import sys

from services.common import app
from services.common.config import Env
from services.common.errors import AgentFactoryError
from services.common.logs import log_event, setup_logging
from services.common.server import Readiness, ServerSettings, serve
from services.signer.ledger import KeyLedger
from services.signer.local_backend import LocalKeyBackend
from services.signer.service import KeyBackend, SignerService
from services.signer.servicer import add_to_server
from services.signer.settings import DEFAULT_PORT, SignerSettings
from services.signer.vault_backend import VaultKeyBackend

log = logging.getLogger("services.signer")


def build_backend(settings: SignerSettings) -> KeyBackend:
    if settings.vault is not None:
        vault = settings.vault
        return VaultKeyBackend(
            vault.addr, vault.token, settings.key_name, mount=vault.mount, timeout=vault.timeout_seconds
        )
    return LocalKeyBackend(settings.data_dir, settings.key_name)


async def run(server: ServerSettings, settings: SignerSettings) -> None:
    backend = build_backend(settings)
    ledger = KeyLedger(settings.data_dir / "ledger" / f"{backend.key_id}.json", backend.key_id)
    service = SignerService(backend, key_cache_seconds=settings.key_cache_seconds, ledger=ledger)
    # Open the key store before listening: a signer that cannot sign safely must not look healthy.
    keys = await service.start()
    log_event(
        log,
        "signer ready",
        backend=service.backend.describe(),
        key_id=keys.key_id,
        min_version=keys.min_version,
        latest_version=keys.latest_version,
    )

    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def on_started(readiness: Readiness) -> None:
        # Key-set watchers hear this process's own rotations at once; this re-read brings them another
        # replica's (several signers on one Vault key) within AF_SIGNER_KEY_CACHE_SECONDS.
        tasks.append(asyncio.create_task(service.refresh_every(settings.key_cache_seconds, stop)))
        await readiness.set_serving()

    async def on_stopping() -> None:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        await serve(
            server,
            lambda s: add_to_server(s, service),
            service_name="signer",
            on_started=on_started,
            on_stopping=on_stopping,
        )
    finally:
        service.close()


def configure(env: Env) -> tuple[ServerSettings, SignerSettings]:
    return ServerSettings.from_env(env, "signer", DEFAULT_PORT), SignerSettings.from_env(env)


async def start(config: tuple[ServerSettings, SignerSettings]) -> int | None:
    server, settings = config
    setup_logging(server.service_id, server.log_level)
    try:
        await run(server, settings)
    except AgentFactoryError as exc:
        log_event(log, "signer cannot start", logging.CRITICAL, error=exc.message, code=exc.code_name)
        print(f"signer: cannot start: {exc.message}", file=sys.stderr)
        return 1
    return None


if __name__ == "__main__":
    sys.exit(app.run_service("signer", configure, start))
