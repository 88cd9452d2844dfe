"""Registry settings, parsed from the `Env` snapshot the process entry (services/common/app.py) reads once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.common.config import ConfigError, Env
from services.common.server import ServerSettings
from services.templates.policy import DEFAULT_POLICY_PATH, Policy

DEFAULT_PORT = 7101  # the topology's (mesh/topology.yaml)
SIGNER_DEFAULT_ADDR = "127.0.0.1:7102"  # the signer's own default port: the two run side by side without a mesh


@dataclass(frozen=True)
class RegistrySettings:
    server: ServerSettings
    data_dir: Path
    signer_addr: str
    signer_timeout_seconds: float
    policy_file: Path
    policy: Policy
    cache_entries: int
    cache_ttl_seconds: float
    watch_queue: int
    # PostgreSQL DSN of the store every registry replica shares; unset: the embedded store in data_dir.
    database_url: str | None = None

    @classmethod
    def from_env(cls, env: Env) -> RegistrySettings:
        policy_file = env.path("AF_POLICY_FILE", str(DEFAULT_POLICY_PATH))
        settings = cls(
            server=ServerSettings.from_env(env, "registry", DEFAULT_PORT),
            data_dir=env.path("AF_DATA_DIR", "var/registry"),
            signer_addr=env.str("AF_SIGNER_ADDR", SIGNER_DEFAULT_ADDR),
            signer_timeout_seconds=env.float("AF_SIGNER_TIMEOUT_SECONDS", 5.0),
            policy_file=policy_file,
            policy=Policy.load(policy_file),  # a PolicyError is a bad setting (__main__)
            cache_entries=env.int("AF_REGISTRY_CACHE_ENTRIES", 1024),
            cache_ttl_seconds=env.float("AF_REGISTRY_CACHE_TTL_SECONDS", 300.0),
            watch_queue=env.int("AF_REGISTRY_WATCH_QUEUE", 1024),
            database_url=env.optional("AF_DATABASE_URL"),
        )
        if settings.cache_entries < 0:
            raise ConfigError("AF_REGISTRY_CACHE_ENTRIES must be >= 0")
        if settings.cache_ttl_seconds <= 0:
            raise ConfigError("AF_REGISTRY_CACHE_TTL_SECONDS must be > 0")
        if settings.watch_queue < 1:
            raise ConfigError("AF_REGISTRY_WATCH_QUEUE must be >= 1")
        if settings.signer_timeout_seconds <= 0:
            raise ConfigError("AF_SIGNER_TIMEOUT_SECONDS must be > 0")
        return settings
