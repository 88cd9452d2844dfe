"""WASI calls that can wait or do unbounded work, replaced by our own interruptible implementations.

wasmtime's WASI runs each call to completion: `poll_oneoff` sleeps for as long as the guest asks and
`random_get` fills a buffer of any size, and epoch interruption cannot reach either (it only checks wasm
code). These shadows keep each call within one epoch tick of its run's deadline and of a cancel:
- `poll_oneoff`: fd subscriptions are ready at once (stdio is in memory; regular files always poll
  ready); clock subscriptions wait in slices of at most one tick, checking the deadline and the cancel
  flag between slices.
- `random_get`: at most the `random` tool's cap (64 KiB) per call, like `random_fill`; a larger request
  is EINVAL (the call has no short-read form), so one call is bounded work.
- `clock_time_get`: shadowed so that `poll_oneoff`'s absolute monotonic timeouts and the guest's
  monotonic clock are the same clock (Python's `time.monotonic_ns`); CPU-time clocks answer EBADF as
  wasmtime's own implementation does. Every other WASI call does a small, bounded amount of work.

Capabilities: reading a clock (`clock_time_get`, `clock_res_get`) is the `clock` grant and random bytes
(`random_get`) the `random` grant, as for the tool functions. Without the grant the Linker of that tool
set holds the `*_denied` functions below, which answer ENOTCAPABLE; choosing per Linker costs a run
nothing. Sleeping (`poll_oneoff` on a clock) reads no time and stays available to every agent.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable

import wasmtime

from services.executor import guest
from services.executor.sandbox.hostcall import host_failure, stop_if_due
from services.executor.sandbox.state import current

ERRNO_SUCCESS, ERRNO_BADF, ERRNO_FAULT, ERRNO_INTR, ERRNO_INVAL = 0, 8, 21, 27, 28
ERRNO_NOTCAPABLE = 76

CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
CLOCK_CPUTIME_IDS = (2, 3)  # process and thread CPU time: not offered (as in wasmtime's WASI)
SUBCLOCKFLAG_ABSTIME = 1
EVENTTYPE_CLOCK, EVENTTYPE_FD_READ, EVENTTYPE_FD_WRITE = 0, 1, 2
SUBSCRIPTION_BYTES, EVENT_BYTES = 48, 32
MAX_SUBSCRIPTIONS = 1024
MAX_RANDOM_BYTES = 64 * 1024  # the random tool's cap (tools.MAX_RANDOM_BYTES), on random_get too

I32 = wasmtime.ValType.i32()
I64 = wasmtime.ValType.i64()
# Parameter lists, not FuncTypes: a wasmtime FuncType is bound to the first Engine that uses it, and the
# same one used with a second Engine aborts the process (a Rust panic, `comes_from_same_engine`). Each
# Linker gets types of its own (engine.Sandbox builds a Linker per tool set and thread, so this is rare).
POLL_ONEOFF_PARAMS = (I32, I32, I32, I32)
RANDOM_GET_PARAMS = (I32, I32)
CLOCK_TIME_GET_PARAMS = (I32, I64, I32)
CLOCK_RES_GET_PARAMS = (I32, I32)


def _errno_func(params: tuple[wasmtime.ValType, ...]) -> wasmtime.FuncType:
    return wasmtime.FuncType(list(params), [I32])


def _clock_ns(clock_id: int) -> int | None:
    if clock_id == CLOCK_REALTIME:
        return time.time_ns()
    if clock_id == CLOCK_MONOTONIC:
        return time.monotonic_ns()
    return None


def clock_time_get(caller: wasmtime.Caller, clock_id: int, _precision: int, out: int) -> int:
    run = current()
    try:
        now = _clock_ns(clock_id)
        if now is None:
            return ERRNO_BADF if clock_id in CLOCK_CPUTIME_IDS else ERRNO_INVAL
        return ERRNO_SUCCESS if guest.write(caller, out, 8, struct.pack("<Q", now)) else ERRNO_FAULT
    except BaseException as exc:
        return host_failure(caller, run, "clock_time_get", exc)


def random_get(caller: wasmtime.Caller, buf: int, length: int) -> int:
    run = current()
    try:
        buf &= guest.U32
        length &= guest.U32
        if length > MAX_RANDOM_BYTES:
            return ERRNO_INVAL
        if not guest.write(caller, buf, length, os.urandom(length)):
            return ERRNO_FAULT
        return ERRNO_SUCCESS
    except BaseException as exc:
        return host_failure(caller, run, "random_get", exc)


def clock_time_get_denied(_caller: wasmtime.Caller, _clock_id: int, _precision: int, _out: int) -> int:
    return ERRNO_NOTCAPABLE


def clock_res_get_denied(_caller: wasmtime.Caller, _clock_id: int, _out: int) -> int:
    return ERRNO_NOTCAPABLE


def random_get_denied(_caller: wasmtime.Caller, _buf: int, _length: int) -> int:
    return ERRNO_NOTCAPABLE


def shadows(tools: frozenset[str]) -> list[tuple[str, wasmtime.FuncType, Callable[..., int]]]:
    """The WASI functions a Linker for `tools` defines over wasmtime's own: (name, type, function), with
    FuncTypes made for this call (see _errno_func's parameter lists)."""
    found: list[tuple[str, wasmtime.FuncType, Callable[..., int]]] = [
        ("poll_oneoff", _errno_func(POLL_ONEOFF_PARAMS), poll_oneoff)
    ]
    if "clock" in tools:
        found.append(("clock_time_get", _errno_func(CLOCK_TIME_GET_PARAMS), clock_time_get))
    else:
        found.append(("clock_time_get", _errno_func(CLOCK_TIME_GET_PARAMS), clock_time_get_denied))
        found.append(("clock_res_get", _errno_func(CLOCK_RES_GET_PARAMS), clock_res_get_denied))
    random = random_get if "random" in tools else random_get_denied
    found.append(("random_get", _errno_func(RANDOM_GET_PARAMS), random))
    return found


def poll_oneoff(caller: wasmtime.Caller, in_ptr: int, out_ptr: int, nsubscriptions: int, nevents: int) -> int:
    run = current()
    try:
        count = nsubscriptions & guest.U32
        if count == 0 or count > MAX_SUBSCRIPTIONS:
            return ERRNO_INVAL
        raw = guest.read(caller, in_ptr, count * SUBSCRIPTION_BYTES)
        if raw is None or not guest.write(caller, out_ptr, count * EVENT_BYTES, b""):
            return ERRNO_FAULT
        began = time.monotonic()
        ready: list[bytes] = []
        clocks: list[tuple[float, int]] = []  # (monotonic time it fires, userdata)
        for i in range(count):
            base = i * SUBSCRIPTION_BYTES
            userdata, tag = struct.unpack_from("<QB", raw, base)
            if tag == EVENTTYPE_CLOCK:
                clock_id, timeout, _precision, flags = struct.unpack_from("<I4xQQH", raw, base + 16)
                fires = _fires_at(clock_id, timeout, flags, began)
                if fires is None:
                    ready.append(_event(userdata, ERRNO_INVAL, tag))
                else:
                    clocks.append((fires, userdata))
            elif tag in (EVENTTYPE_FD_READ, EVENTTYPE_FD_WRITE):
                (fd,) = struct.unpack_from("<I", raw, base + 16)
                nbytes = len(run.spec.input) - run.input_pos if (tag, fd) == (EVENTTYPE_FD_READ, 0) else 0
                ready.append(_event(userdata, ERRNO_SUCCESS, tag, nbytes))
            else:
                return ERRNO_INVAL
        if not ready:
            wake = min(fires for fires, _ in clocks)
            while True:
                if stop_if_due(caller, run):
                    return ERRNO_INTR
                now = time.monotonic()
                if now >= wake:
                    break
                run.maybe_flush()  # what the guest wrote before it waits reaches the stream meanwhile
                time.sleep(max(min(wake - now, run.deadline - now, run.tick), 0.0))
        now = time.monotonic()
        ready += [_event(userdata, ERRNO_SUCCESS, EVENTTYPE_CLOCK) for fires, userdata in clocks if fires <= now]
        if not guest.write(caller, out_ptr, len(ready) * EVENT_BYTES, b"".join(ready)):
            return ERRNO_FAULT
        return ERRNO_SUCCESS if guest.write_u32(caller, nevents, len(ready)) else ERRNO_FAULT
    except BaseException as exc:
        return host_failure(caller, run, "poll_oneoff", exc)


def _fires_at(clock_id: int, timeout_ns: int, flags: int, began: float) -> float | None:
    """When a clock subscription fires, on time.monotonic()'s scale; None for a clock we do not offer."""
    if not flags & SUBCLOCKFLAG_ABSTIME:
        return began + timeout_ns / 1e9 if clock_id in (CLOCK_REALTIME, CLOCK_MONOTONIC) else None
    now = _clock_ns(clock_id)
    if now is None:
        return None
    return began + (timeout_ns - now) / 1e9


def _event(userdata: int, error: int, kind: int, nbytes: int = 0) -> bytes:
    return struct.pack("<QHBxxxxxQHxxxxxx", userdata, error, kind, nbytes, 0)
