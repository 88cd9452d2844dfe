"""Engine configuration: everything that shapes compiled code, and its fingerprint (the disk cache key)."""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from services.executor.sandbox import scratch

WASMTIME_VERSION = importlib.metadata.version("wasmtime")


@dataclass(frozen=True)
class EngineSettings:
    """Everything that shapes compiled code is part of `fingerprint()` (the disk cache key)."""

    max_wasm_stack: int = 512 * 1024
    # Lowered from wasmtime's 4 GiB per instance: 64 MiB is the policy's memory ceiling, so memories
    # never move. Costs explicit bounds checks (measured ~17 % on the sieve; see perf/sandbox/REPORT.md).
    memory_reservation: int = 64 * 1024 * 1024
    memory_guard_size: int = 64 * 1024
    memory_reservation_for_growth: int = 16 * 1024 * 1024
    opt_level: str = "speed"
    epoch_tick_ms: int = 10

    def config(self) -> wasmtime.Config:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        config.max_wasm_stack = self.max_wasm_stack
        config.memory_reservation = self.memory_reservation
        config.memory_guard_size = self.memory_guard_size
        config.memory_reservation_for_growth = self.memory_reservation_for_growth
        config.cranelift_opt_level = self.opt_level
        config.parallel_compilation = False  # compile work stays on the thread that asked for it
        return config

    def fingerprint(self) -> str:
        described = (
            f"wasmtime={WASMTIME_VERSION};fuel=1;epoch=1;stack={self.max_wasm_stack};"
            f"reservation={self.memory_reservation};guard={self.memory_guard_size};"
            f"growth={self.memory_reservation_for_growth};opt={self.opt_level};start=detached"
        )
        return hashlib.sha256(described.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ScratchSettings:
    """Runs granted `scratch`: where their private directories are made, and the cap each one holds
    (scratch.py). Not part of the fingerprint: nothing here shapes compiled code. The executor passes its
    own (AF_EXECUTOR_SCRATCH_*, a run root of its own that start-up sweeps); the defaults are for tests."""

    max_bytes: int = scratch.MAX_BYTES  # everything under the run's `/` (which holds `/scratch`)
    max_entries: int = scratch.MAX_ENTRIES  # files, directories and symlinks under its `/`, `/scratch` included
    run_root: Path | None = None  # None: the system's temporary directory
