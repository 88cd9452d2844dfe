"""How a run ended, from what it recorded and what wasmtime raised: the outcome, limit, trap and reason
of its Finished event (the table in services/executor/README.md). Checked in order: a host bug, a limit a
host function tripped, a cancel, the deadline, then the guest's own exit, trap or error."""

from __future__ import annotations

import logging

import wasmtime

from services.executor.events import Finished, LimitKind, Outcome
from services.executor.sandbox.state import RunState
from services.templates.manifest import Limits

log = logging.getLogger(__name__)


def classify(run: RunState, error: BaseException | None, peak: int, instantiated: bool) -> Finished:
    limits = run.spec.limits
    if run.internal_error:
        return Finished(Outcome.FAILED, trap="host_error", reason=f"{run.internal_error} (an executor bug)")
    if run.tripped is not None:
        return Finished(Outcome.RESOURCE_EXHAUSTED, limit=run.tripped[0], reason=run.tripped[1])
    if run.cancelled:
        return Finished(Outcome.CANCELLED, reason="the run was cancelled by its caller")
    if run.deadline_hit:
        phase = "" if instantiated else " (during instantiation: the start function ran too long)"
        return Finished(
            Outcome.TIMED_OUT,
            limit=LimitKind.DEADLINE,
            reason=f"the run exceeded timeout_ms={limits.timeout_ms}{phase}",
        )
    if error is None or (isinstance(error, wasmtime.ExitTrap) and error.code == 0):
        return Finished(Outcome.SUCCEEDED, exit_code=0)
    if run.scratch is not None and run.scratch.refusals:
        # The guest was told ENOSPC and then failed: that is why, whatever its exit code or trap says.
        status = error.code if isinstance(error, wasmtime.ExitTrap) else 0
        how = f"exited with code {status}" if isinstance(error, wasmtime.ExitTrap) else f"failed: {_first_line(error)}"
        return Finished(
            Outcome.RESOURCE_EXHAUSTED,
            exit_code=status,
            limit=LimitKind.SCRATCH,
            reason=f"the agent's file system is full (a run's holds at most {run.scratch.describe()}); the agent "
            f"then {how}",
        )
    if isinstance(error, wasmtime.ExitTrap):
        if _memory_pressed(peak, limits.memory_bytes):
            return _memory_finished(limits, f"exit code {error.code}", exit_code=error.code)
        return Finished(Outcome.FAILED, exit_code=error.code, reason=f"the agent exited with code {error.code}")
    if isinstance(error, wasmtime.Trap):
        code = error.trap_code
        if code is wasmtime.TrapCode.OUT_OF_FUEL:
            return Finished(
                Outcome.RESOURCE_EXHAUSTED,
                trap="out_of_fuel",
                limit=LimitKind.FUEL,
                reason=f"the agent used all of its fuel (limits.fuel={limits.fuel})",
            )
        if code is wasmtime.TrapCode.STACK_OVERFLOW:
            return Finished(
                Outcome.RESOURCE_EXHAUSTED,
                trap="stack_overflow",
                limit=LimitKind.STACK,
                reason="the agent overflowed the wasm stack (too deep recursion)",
            )
        name = code.name.lower() if code is not None else "trap"
        if _memory_pressed(peak, limits.memory_bytes):
            return _memory_finished(limits, f"trap {name}", trap=name)
        where = " in its start function" if not instantiated else ""
        return Finished(Outcome.FAILED, trap=name, reason=f"the agent trapped{where}: {_first_line(error)}")
    message = _first_line(error)
    if not instantiated and ("memory" in message or "table" in message) and "limit" in message:
        return Finished(
            Outcome.RESOURCE_EXHAUSTED,
            limit=LimitKind.MEMORY,
            reason=f"the module needs more memory or table space than the limits allow "
            f"(limits.memory_bytes={limits.memory_bytes}): {message}",
        )
    if isinstance(error, wasmtime.WasmtimeError):
        return Finished(Outcome.FAILED, trap="error", reason=f"the agent failed: {message}")
    log.error("unexpected error while running an agent", exc_info=error)
    return Finished(Outcome.FAILED, trap="host_error", reason=f"executor error: {type(error).__name__}")


def _memory_pressed(peak: int, limit: int) -> bool:
    """A failed run whose memory cannot grow by another 1/16 of the limit is taken to have hit it."""
    return peak > 0 and peak + max(limit // 16, 65536) > limit


def _memory_finished(limits: Limits, how: str, exit_code: int = 0, trap: str = "") -> Finished:
    return Finished(
        Outcome.RESOURCE_EXHAUSTED,
        exit_code=exit_code,
        trap=trap,
        limit=LimitKind.MEMORY,
        reason=f"the agent ran out of memory (limits.memory_bytes={limits.memory_bytes}) and ended with {how}",
    )


def _first_line(error: BaseException) -> str:
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # wasmtime puts the backtrace first and the cause after "Caused by:"
    if "Caused by:" in lines:
        after = lines[lines.index("Caused by:") + 1 :]
        if after:
            return after[0][:300]
    return (lines[0] if lines else type(error).__name__)[:300]
