"""The compile entry point: structural bounds first, then a compile whose own cost is bounded.

1. The policy's module bounds (spec/wasm_structure.py), read from section headers and counts:
   FAILED_PRECONDITION naming the rule, before any compile work.
2. The start function is detached (start.py) so that it runs after instantiation; for a tool set with
   `scratch`, the module's file writes are routed through the run's wasm guard (scratch_rewrite.py).
3. Small modules (what every example agent is) whose nesting was read compile in-process; anything else
   compiles in a child process (compile_worker.py) under RLIMIT_CPU and RLIMIT_AS and a wall-clock
   timeout, which is abandoned (killed) when it runs past them; its serialized result is deserialized
   here (about 0.04 ms). The warm path (a cached compiled module) never comes here.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from services.common.errors import FailedPrecondition
from services.executor.sandbox.compile_worker import EXIT_INVALID
from services.executor.sandbox.config import EngineSettings
from services.executor.sandbox.scratch_rewrite import RESERVED_MODULE, reserved_import, route_writes
from services.executor.sandbox.start import detach_start
from services.templates.wasm_structure import MalformedModule, ModuleBounds, Structure, read_structure

# Below both, compiling takes milliseconds: cheaper than starting a worker (~0.3 s).
INPROCESS_MAX_CODE_BYTES = 64 * 1024
INPROCESS_MAX_FUNCTIONS = 1000
_ROOT = Path(__file__).resolve().parents[3]  # where `services` is importable from, for the worker


@dataclass(frozen=True)
class CompileBudget:
    """What one compile in the worker may use before it is abandoned."""

    seconds: float = 30.0  # wall clock
    cpu_seconds: int = 20
    memory_bytes: int = 2 * 1024 * 1024 * 1024  # address space of the worker process


def check_structure(wasm: bytes, bounds: ModuleBounds) -> Structure:
    """The module's structure, or FailedPrecondition naming the first `module.*` rule it breaks."""
    try:
        structure = read_structure(wasm)
    except MalformedModule as exc:
        raise FailedPrecondition(f"{exc} (rule module.well_formed)") from exc
    violation = bounds.violation(structure)
    if violation is not None:
        raise FailedPrecondition(violation)
    return structure


def compile_module(
    engine: wasmtime.Engine,
    settings: EngineSettings,
    wasm: bytes,
    bounds: ModuleBounds,
    budget: CompileBudget,
    scratch: bool = False,
) -> wasmtime.Module:
    """`scratch`: for a tool set granting `scratch`, the module's writes routed through the run's wasm
    guard (scratch_rewrite.py) when it qualifies; the result is a different module, cached apart."""
    structure = check_structure(wasm, bounds)
    try:
        if reserved_import(wasm):
            raise FailedPrecondition(
                f"module imports from {RESERVED_MODULE!r}, a module name the executor reserves "
                "(rule module.well_formed)"
            )
        detached, _ = detach_start(wasm)
        if scratch:
            detached = route_writes(detached)
    except MalformedModule as exc:
        raise FailedPrecondition(f"{exc} (rule module.well_formed)") from exc
    cheap = structure.code_bytes <= INPROCESS_MAX_CODE_BYTES and structure.functions <= INPROCESS_MAX_FUNCTIONS
    if cheap and structure.max_nesting >= 0:  # -1: an instruction the reader could not decode
        try:
            return wasmtime.Module(engine, detached)
        except wasmtime.WasmtimeError as exc:
            raise FailedPrecondition(f"module does not compile: {str(exc).splitlines()[0][:300]}") from exc
    return wasmtime.Module.deserialize(engine, _compile_in_worker(settings, detached, budget))


def _compile_in_worker(settings: EngineSettings, wasm: bytes, budget: CompileBudget) -> bytes:
    options = dataclasses.asdict(settings) | {"cpu_seconds": budget.cpu_seconds, "memory_bytes": budget.memory_bytes}
    command = [sys.executable, "-m", "services.executor.sandbox.compile_worker", json.dumps(options)]
    try:
        done = subprocess.run(command, input=wasm, capture_output=True, timeout=budget.seconds, cwd=_ROOT, check=False)
    except subprocess.TimeoutExpired as exc:  # run() killed the worker
        raise FailedPrecondition(
            f"module compile ran longer than {budget.seconds:g} s and was abandoned (rule compile.seconds)"
        ) from exc
    if done.returncode == 0:
        return done.stdout
    if done.returncode == EXIT_INVALID:
        raise FailedPrecondition(f"module does not compile: {done.stderr.decode('utf-8', 'replace')[:300]}")
    if done.returncode in (-9, -24):  # SIGKILL / SIGXCPU: the CPU limit
        raise FailedPrecondition(
            f"module compile used more than {budget.cpu_seconds} s of CPU and was abandoned (rule compile.cpu_seconds)"
        )
    raise FailedPrecondition(
        f"module compile failed in its worker (exit {done.returncode}; memory budget "
        f"{budget.memory_bytes} bytes, rule compile.memory_bytes)"
    )
