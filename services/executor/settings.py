"""Executor settings, parsed from the `Env` snapshot the process entry (services/common/app.py) reads once
(see README.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from services.common.config import ConfigError, Env
from services.common.server import ServerSettings
from services.executor.sandbox import EngineSettings
from services.templates.policy import Policy

DEFAULT_PORT = 7103  # the topology's (mesh/topology.yaml: executor-blue)
# The upstreams' own default ports, so the services find each other when run side by side without a mesh.
REGISTRY_DEFAULT_ADDR = "127.0.0.1:7101"
SIGNER_DEFAULT_ADDR = "127.0.0.1:7102"


@dataclass(frozen=True)
class ExecutorSettings:
    server: ServerSettings
    data_dir: Path
    registry_addr: str
    signer_addr: str
    policy_file: Path | None
    policy: Policy
    min_workers: int
    max_workers: int
    max_queue: int
    idle_seconds: float
    module_cache_entries: int
    module_memory_bytes: int
    module_disk_bytes: int
    keys_refresh_seconds: float
    engine: EngineSettings
    keys_watch: bool = True
    inline_fuel: int = 0
    files_cache_bytes: int = 1024 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Env) -> ExecutorSettings:
        cores = os.cpu_count() or 2
        policy_file = Path(p) if (p := env.optional("AF_POLICY_FILE")) else None
        settings = cls(
            server=ServerSettings.from_env(env, "executor", DEFAULT_PORT),
            data_dir=env.path("AF_DATA_DIR", "var/executor"),
            registry_addr=env.str("AF_REGISTRY_ADDR", REGISTRY_DEFAULT_ADDR),
            signer_addr=env.str("AF_SIGNER_ADDR", SIGNER_DEFAULT_ADDR),
            policy_file=policy_file,
            policy=Policy.load(policy_file),  # a PolicyError is a bad setting (__main__)
            min_workers=env.int("AF_EXECUTOR_MIN_WORKERS", 1),
            max_workers=env.int("AF_EXECUTOR_MAX_WORKERS", 2 * cores),
            max_queue=env.int("AF_EXECUTOR_QUEUE", 4 * cores),
            idle_seconds=env.float("AF_EXECUTOR_IDLE_SECONDS", 30.0),
            module_cache_entries=env.int("AF_EXECUTOR_MODULE_CACHE", 4096),
            module_memory_bytes=env.int("AF_EXECUTOR_MODULE_MEMORY_BYTES", 512 * 1024 * 1024),
            module_disk_bytes=env.int("AF_EXECUTOR_MODULE_DISK_BYTES", 2 * 1024 * 1024 * 1024),
            keys_refresh_seconds=env.float("AF_EXECUTOR_KEYS_REFRESH_SECONDS", 60.0),
            keys_watch=env.bool("AF_EXECUTOR_KEYS_WATCH", True),
            # Fuel budget of a run on the event loop's thread (see ExecutorService); 0 sends every run
            # through the pool.
            inline_fuel=env.int("AF_EXECUTOR_INLINE_FUEL", 100_000),
            # Template files on disk (one tree per file set, least recently used dropped past this; a tree
            # in use is never dropped, so one template's files may exceed it for the length of its runs).
            files_cache_bytes=env.int("AF_EXECUTOR_FILES_CACHE_BYTES", 1024 * 1024 * 1024),
            engine=EngineSettings(
                epoch_tick_ms=env.int("AF_EXECUTOR_EPOCH_TICK_MS", 10),
                memory_reservation=env.int("AF_EXECUTOR_MEMORY_RESERVATION_BYTES", 64 * 1024 * 1024),
            ),
        )
        if not 0 <= settings.min_workers <= settings.max_workers or settings.max_workers < 1:
            raise ConfigError("need 0 <= AF_EXECUTOR_MIN_WORKERS <= AF_EXECUTOR_MAX_WORKERS and MAX_WORKERS >= 1")
        if settings.inline_fuel < 0:
            raise ConfigError("AF_EXECUTOR_INLINE_FUEL must be >= 0")
        if settings.module_cache_entries < 0 or settings.module_memory_bytes < 0 or settings.module_disk_bytes < 0:
            raise ConfigError("AF_EXECUTOR_MODULE_CACHE, _MODULE_MEMORY_BYTES and _MODULE_DISK_BYTES must be >= 0")
        if settings.files_cache_bytes < 0:
            raise ConfigError("AF_EXECUTOR_FILES_CACHE_BYTES must be >= 0")
        if settings.max_queue < 0:
            raise ConfigError("AF_EXECUTOR_QUEUE must be >= 0")
        if not 1 <= settings.engine.epoch_tick_ms <= 1000:
            raise ConfigError("AF_EXECUTOR_EPOCH_TICK_MS must be between 1 and 1000")
        return settings
