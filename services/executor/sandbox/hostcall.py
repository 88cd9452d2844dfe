"""What every host function shares: stopping its run from inside a host call, and failing safely.

Epoch interruption only reaches wasm code, so a host call cannot be interrupted from outside. Each host
function therefore does bounded work per call and, wherever it could wait or loop, checks its run's
deadline and cancel flag (`RunState.must_stop`) at least once per epoch tick; when either has come it
calls `stop_now`, which zeroes the store's fuel through the function's own Caller, so the guest traps
at its next instruction batch and the run is classified by what was recorded (TIMED_OUT, CANCELLED or
a limit) rather than as "out of fuel".

Host functions never raise: wasmtime-py keeps the exception a host function raised in a process-global
(`_func.LAST_EXCEPTION`) that a concurrent run on another thread could pick up, so every host function
catches everything, records it on its own run (`host_failure`) and returns an error code.
"""

from __future__ import annotations

import logging

import wasmtime

from services.executor.sandbox import ffi
from services.executor.sandbox.state import RunState

log = logging.getLogger(__name__)

ERRNO_IO = 29  # WASI EIO; the agentfactory tools' AF_ERR_IO is -5, but a failing run never reads either


def stop_now(caller: wasmtime.Caller, run: RunState) -> None:
    """End the guest at its next fuel check (called only on the run's own thread, via its Caller)."""
    run.fuel_at_trip = ffi.caller_fuel(caller)
    ffi.set_caller_fuel(caller, 0)


def stop_if_due(caller: wasmtime.Caller, run: RunState) -> bool:
    """Stop the run when its deadline passed or it was cancelled; True when it was stopped."""
    if run.must_stop():
        stop_now(caller, run)
        return True
    return False


def host_failure(caller: wasmtime.Caller, run: RunState, where: str, exc: BaseException, code: int = ERRNO_IO) -> int:
    """A bug in the host, not the guest's fault: stop the run and say so instead of raising."""
    log.error("host function %s failed", where, exc_info=exc)
    run.internal_error = run.internal_error or f"host function {where} failed: {type(exc).__name__}"
    try:
        stop_now(caller, run)
    except BaseException:
        run.deadline = 0.0  # the epoch callback stops it at the next tick instead
    return code
