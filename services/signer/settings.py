"""Signer settings, parsed from the `Env` snapshot the process entry (services/common/app.py) reads once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.common.config import ConfigError, Env
from services.common.errors import InvalidArgument
from services.common.server import ServerSettings
from services.signer.service import check_key_name

DEFAULT_PORT = 7102  # the topology's (mesh/topology.yaml)
BACKENDS = ("local", "vault")


@dataclass(frozen=True)
class VaultSettings:
    addr: str
    token: str = field(repr=False)  # never in logs or tracebacks
    mount: str
    timeout_seconds: float


@dataclass(frozen=True)
class SignerSettings:
    server: ServerSettings
    backend: str
    key_name: str
    data_dir: Path
    vault: VaultSettings | None
    key_cache_seconds: float

    @classmethod
    def from_env(cls, env: Env) -> SignerSettings:
        backend = env.str("AF_SIGNER_BACKEND", "local").lower()
        if backend not in BACKENDS:
            raise ConfigError(f"AF_SIGNER_BACKEND={backend!r} is not one of {', '.join(BACKENDS)}")
        key_name = env.str("AF_SIGNER_KEY_NAME", "templates")
        try:
            check_key_name(key_name)
        except InvalidArgument as exc:
            raise ConfigError(f"AF_SIGNER_KEY_NAME: {exc.message}") from exc
        return cls(
            server=ServerSettings.from_env(env, "signer", DEFAULT_PORT),
            backend=backend,
            key_name=key_name,
            data_dir=env.path("AF_DATA_DIR", "var/signer"),
            vault=_vault_settings(env) if backend == "vault" else None,
            key_cache_seconds=env.float("AF_SIGNER_KEY_CACHE_SECONDS", 10.0),
        )


def _vault_settings(env: Env) -> VaultSettings:
    addr = env.optional("AF_VAULT_ADDR")
    if not addr:
        raise ConfigError("AF_SIGNER_BACKEND=vault needs AF_VAULT_ADDR (for example http://127.0.0.1:8200)")
    token, token_file = env.optional("AF_VAULT_TOKEN"), env.optional("AF_VAULT_TOKEN_FILE")
    if token and token_file:
        raise ConfigError("set AF_VAULT_TOKEN or AF_VAULT_TOKEN_FILE, not both")
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"AF_VAULT_TOKEN_FILE={token_file!r} cannot be read: {exc.strerror}") from exc
        if not token:
            raise ConfigError(f"AF_VAULT_TOKEN_FILE={token_file!r} is empty")
    if not token:
        raise ConfigError(
            "AF_SIGNER_BACKEND=vault needs a Vault token: set AF_VAULT_TOKEN or AF_VAULT_TOKEN_FILE "
            "(there is no default token)"
        )
    return VaultSettings(
        addr=addr.rstrip("/"),
        token=token,
        mount=env.str("AF_VAULT_TRANSIT_MOUNT", "transit").strip("/"),
        timeout_seconds=env.float("AF_VAULT_TIMEOUT_SECONDS", 5.0),
    )
