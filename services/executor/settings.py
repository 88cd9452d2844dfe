"""Executor settings, parsed from the `Env` snapshot the process entry (services/common/app.py) reads once
(see README.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from services.common.config import ConfigError, Env
from services.common.server import ServerSettings
from services.executor.sandbox import EngineSettings, ScratchSettings
from services.executor.sandbox.compile import CompileBudget
from services.executor.sandbox.wasi_files import MAX_DESCRIPTORS
from services.templates.policy import Policy

DEFAULT_PORT = 7103  # the topology's (mesh/topology.yaml: executor-blue)
# The upstreams' own default ports, so the services find each other when run side by side without a mesh.
REGISTRY_DEFAULT_ADDR = "127.0.0.1:7101"
SIGNER_DEFAULT_ADDR = "127.0.0.1:7102"
RUNS_SUBDIR = "runs"  # under AF_DATA_DIR: the run directories of `scratch` runs, swept at start-up

# Below these a setting cannot work: a run's `/` and `/scratch` take two blocks and one entry before the
# guest writes anything; a compile worker is a Python process that imports wasmtime (~100 MiB of address
# space) before it compiles. Above them it is a typo, not a plan.
SCRATCH_BYTES_RANGE = (64 * 1024, 1 << 40)
SCRATCH_ENTRIES_RANGE = (2, 1 << 20)
COMPILE_SECONDS_RANGE = (0.1, 3600.0)
COMPILE_CPU_SECONDS_RANGE = (1, 3600)
COMPILE_MEMORY_BYTES_RANGE = (256 * 1024 * 1024, 1 << 40)
# A run with a preopen starts holding stdio and its preopens (up to 5 descriptors); every one it opens is
# a real descriptor of this process, so workers x this must stay below the process's open-files limit.
MAX_DESCRIPTORS_RANGE = (8, 65536)


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
    scratch: ScratchSettings = field(default_factory=ScratchSettings)
    compile_budget: CompileBudget = field(default_factory=CompileBudget)
    max_descriptors: int = MAX_DESCRIPTORS  # open at once by one run with a preopen (EMFILE past it)

    @property
    def run_root(self) -> Path:
        """Where runs granted `scratch` get their directories (swept at start-up, run_dirs.py)."""
        return self.data_dir / RUNS_SUBDIR

    @classmethod
    def from_env(cls, env: Env) -> ExecutorSettings:
        cores = os.cpu_count() or 2
        policy_file = Path(p) if (p := env.optional("AF_POLICY_FILE")) else None
        data_dir = env.path("AF_DATA_DIR", "var/executor")
        settings = cls(
            server=ServerSettings.from_env(env, "executor", DEFAULT_PORT),
            data_dir=data_dir,
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
            scratch=_scratch(env, data_dir),
            compile_budget=_compile_budget(env),
            max_descriptors=env.int("AF_EXECUTOR_MAX_DESCRIPTORS", MAX_DESCRIPTORS),
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
        _in_range("AF_EXECUTOR_MAX_DESCRIPTORS", settings.max_descriptors, MAX_DESCRIPTORS_RANGE)
        if not 1 <= settings.engine.epoch_tick_ms <= 1000:
            raise ConfigError("AF_EXECUTOR_EPOCH_TICK_MS must be between 1 and 1000")
        return settings


def _in_range(name: str, value: float, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}")


def _scratch(env: Env, data_dir: Path) -> ScratchSettings:
    """The cap of a run granted `scratch` (sandbox/scratch.py); its directory under AF_DATA_DIR/runs."""
    default = ScratchSettings()
    max_bytes = env.int("AF_EXECUTOR_SCRATCH_BYTES", default.max_bytes)
    max_entries = env.int("AF_EXECUTOR_SCRATCH_ENTRIES", default.max_entries)
    _in_range("AF_EXECUTOR_SCRATCH_BYTES", max_bytes, SCRATCH_BYTES_RANGE)
    _in_range("AF_EXECUTOR_SCRATCH_ENTRIES", max_entries, SCRATCH_ENTRIES_RANGE)
    return ScratchSettings(max_bytes=max_bytes, max_entries=max_entries, run_root=data_dir / RUNS_SUBDIR)


def _compile_budget(env: Env) -> CompileBudget:
    """What one compile in the worker process may use before it is abandoned (sandbox/compile.py)."""
    default = CompileBudget()
    budget = CompileBudget(
        seconds=env.float("AF_EXECUTOR_COMPILE_SECONDS", default.seconds),
        cpu_seconds=env.int("AF_EXECUTOR_COMPILE_CPU_SECONDS", default.cpu_seconds),
        memory_bytes=env.int("AF_EXECUTOR_COMPILE_MEMORY_BYTES", default.memory_bytes),
    )
    _in_range("AF_EXECUTOR_COMPILE_SECONDS", budget.seconds, COMPILE_SECONDS_RANGE)
    _in_range("AF_EXECUTOR_COMPILE_CPU_SECONDS", budget.cpu_seconds, COMPILE_CPU_SECONDS_RANGE)
    _in_range("AF_EXECUTOR_COMPILE_MEMORY_BYTES", budget.memory_bytes, COMPILE_MEMORY_BYTES_RANGE)
    return budget
