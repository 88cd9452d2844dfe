"""The WASI calls a run with a preopen makes through us: the descriptor bound, stdio, the scratch cap.

A Linker for a run with a preopen (`scratch`, template files, or both) defines these over wasmtime's own,
and each does exactly what wasmtime's WASI does by calling it, after its check:
- `path_open`, `fd_close`, `fd_renumber` keep the run's descriptor table (wasi_files.py): `path_open`
  answers EMFILE when the run holds its limit of descriptors;
- `fd_write` to a descriptor that is still stdout or stderr goes to the executor's own stdio function
  (stdio.py: the output cap stops the guest at once), not to WASI: these writes are the run's output, not
  disk. Only once a file took that descriptor (`fd_renumber` onto it, or `path_open` answering it after
  a `fd_close`) is it forwarded (and charged) like any write;
- with `scratch`, the calls that can put bytes or entries on the host's disk (`fd_write`, `fd_pwrite`,
  `path_open` with O_CREAT, `path_create_directory`, `path_symlink`, `path_link`, `path_rename`) charge
  ScratchBudget (scratch.py) an upper bound of what they can add and answer ENOSPC when it does not fit.
A host function cannot call wasmtime's WASI itself (the WASI function finds the guest's memory through its
caller, and a call from the host has none), so a run forwards each call through a guard: a tiny wasm
instance that imports the guest's memory and that WASI function, exports the memory, and forwards the
call. One per call, made at the run's first call of it through C calls (ffi.RawForwarder, ~10 us each: a
run that reads a template file makes two, one that opens nothing none), dropped with the store.

These are on the path of every file write of a scratch run, so they are raw host functions (ffi.py):
arguments read and the guard called in place, no Val per argument (about 3 us a call instead of ~15).
`fd_allocate` is not among them: wasmtime answers it ENOTSUP. Growing a file with
`fd_filestat_set_size` allocates nothing (a sparse file), so it is not charged either.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import wasmtime

from services.executor.sandbox import ffi, stdio
from services.executor.sandbox.hostcall import host_failure
from services.executor.sandbox.scratch import BLOCK
from services.executor.sandbox.state import CURRENT, RunState
from services.executor.sandbox.wasi_files import STDIN, RunFiles

WASI_MODULE = "wasi_snapshot_preview1"
ERRNO_FAULT, ERRNO_INVAL, ERRNO_MFILE, ERRNO_NOSPC = 21, 28, 33, 51
OFLAGS_CREAT = 1
MAX_IOVECS = 1024  # IOV_MAX: what libcs send at most; more is EINVAL (never forwarded uncharged)
U32 = 0xFFFFFFFF

I32, I64 = "i32", "i64"
# name -> parameter types (each returns an i32 errno)
SIGNATURES: dict[str, tuple[str, ...]] = {
    "fd_write": (I32, I32, I32, I32),
    "fd_pwrite": (I32, I32, I32, I64, I32),
    "path_open": (I32, I32, I32, I32, I32, I64, I64, I32, I32),
    "path_create_directory": (I32, I32, I32),
    "path_symlink": (I32, I32, I32, I32, I32),
    "path_link": (I32, I32, I32, I32, I32, I32, I32),
    "path_rename": (I32, I32, I32, I32, I32, I32),
    "fd_renumber": (I32, I32),
    "fd_close": (I32,),
}
# Linked for every run with a preopen (the descriptor table and stdout/stderr); the rest only with `scratch`.
TABLE_CALLS = ("fd_write", "path_open", "fd_close", "fd_renumber")


def guard_wat(name: str) -> str:
    """A guard module for one call: the guest's memory imported and exported as `memory`, the call forwarded."""
    types = SIGNATURES[name]
    params = " ".join(types)
    body = " ".join(f"local.get {i}" for i in range(len(types)))
    return (
        f'(module (import "env" "memory" (memory 0))\n'
        f'(import "{WASI_MODULE}" "{name}" (func ${name} (param {params}) (result i32)))\n'
        f'(export "memory" (memory 0))\n'
        f'(func (export "{name}") (param {params}) (result i32) {body} call ${name}))'
    )


def func_type(name: str) -> wasmtime.FuncType:
    kinds = {I32: wasmtime.ValType.i32(), I64: wasmtime.ValType.i64()}
    return wasmtime.FuncType([kinds[t] for t in SIGNATURES[name]], [wasmtime.ValType.i32()])


@dataclass
class Forward:
    """One run's guard: the guest's memory and the guard function of each call it made so far."""

    memory: ffi.RawMemory
    funcs: dict[str, ffi.RawFunc]


class Guard:
    """The process's guard modules (one per call, so a run instantiates only those of the calls it makes:
    a run that reads a template file, path_open and fd_close) and a WASI-only Linker to take their
    imports from, per store."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self.wasi = wasmtime.Linker(engine)
        self.wasi.define_wasi()
        self._forwarders = {
            name: ffi.RawForwarder(self.wasi, wasmtime.Module(engine, guard_wat(name)), WASI_MODULE, name)
            for name in SIGNATURES
        }

    def start(self, caller: ffi.RawCaller) -> Forward | None:
        """None when the guest has no memory export (link() refuses such a module; kept for safety)."""
        memory = ffi.caller_memory(caller)
        return None if memory is None else Forward(memory, {})

    def function(self, caller: ffi.RawCaller, forward: Forward, name: str) -> ffi.RawFunc:
        """The run's guard function for `name`, instantiated at its first call."""
        func = self._forwarders[name].instantiate(caller, forward.memory)
        forward.funcs[name] = func
        return func


# A charge: (bytes, entries) to admit before forwarding, or an errno to answer without forwarding.
Charge = Callable[[ffi.RawContext, ffi.RawMemory, ffi.RawValues], "tuple[int, int] | int"]


def _write(context: ffi.RawContext, memory: ffi.RawMemory, values: ffi.RawValues) -> tuple[int, int] | int:
    iovs, count = values[1].i32 & U32, values[2].i32 & U32
    if count > MAX_IOVECS:
        return ERRNO_INVAL
    raw = ffi.memory_read(context, memory, iovs, count * 8)
    if raw is None:
        return ERRNO_FAULT
    lengths: tuple[int, ...] = struct.unpack_from(f"<{count * 2}I", raw)[1::2]
    return sum(lengths) + 2 * BLOCK, 0  # a partial block at each end of the range


def _open(_context: ffi.RawContext, _memory: ffi.RawMemory, values: ffi.RawValues) -> tuple[int, int]:
    return (BLOCK, 1) if values[4].i32 & OFLAGS_CREAT else (0, 0)


def _new_entry(_context: ffi.RawContext, _memory: ffi.RawMemory, _values: ffi.RawValues) -> tuple[int, int]:
    return BLOCK, 1


def _directory_growth(_context: ffi.RawContext, _memory: ffi.RawMemory, _values: ffi.RawValues) -> tuple[int, int]:
    return BLOCK, 0


# What each call charges a scratch run's budget (fd_close and fd_renumber add nothing to the disk).
CHARGES: dict[str, Charge] = {
    "fd_write": _write,
    "fd_pwrite": _write,
    "path_open": _open,
    "path_create_directory": _new_entry,
    "path_symlink": _new_entry,
    "path_link": _new_entry,
    "path_rename": _directory_growth,
}


def _setup(caller_ptr: ffi.RawCaller, files: RunFiles) -> bool:
    """The run's guard, at its first forwarded call."""
    files.forward = files.guard.start(caller_ptr)
    return files.forward is not None


def _stdio(caller_ptr: ffi.RawCaller, stream: int, values: ffi.RawValues) -> int:
    caller = ffi.wrap_caller(caller_ptr)
    try:
        return stdio.fd_write(caller, stream, values[1].i32, values[2].i32, values[3].i32)
    finally:
        caller._invalidate()


def _fail(caller_ptr: ffi.RawCaller, run: RunState, name: str, exc: BaseException) -> int:
    caller = ffi.wrap_caller(caller_ptr)
    try:
        return host_failure(caller, run, name, exc)
    finally:
        caller._invalidate()


def _refused(run: RunState, refusals: int, message: str, errno: int) -> int:
    if refusals == 1:  # said once per run: a program may retry many times
        run.add_log("warn", message.encode())
    return errno


def _raw(name: str) -> object:
    count = max(len(SIGNATURES[name]), 1)
    charge = CHARGES.get(name)
    writes, opens, closes, renumbers = (name == n for n in ("fd_write", "path_open", "fd_close", "fd_renumber"))

    def call(_env: object, caller_ptr: ffi.RawCaller, values: ffi.RawValues, _n: int) -> int:
        # Never raises (a raw callback's exception would be lost and its result garbage); answers in values[0].
        run: RunState = CURRENT.run
        try:
            files = run.files
            assert files is not None, "fs_calls are linked only for runs with a preopen"
            table = files.descriptors
            first = values[0].i32 & U32
            if writes:
                stream = table.stdio.get(first, STDIN)  # STDIN: not an output stream (a file, or stdin itself)
                if stream != STDIN:
                    # The run's output, not disk: the executor's own stdio function, no forward to WASI.
                    values[0].i32 = _stdio(caller_ptr, stream, values)
                    return 0
            elif opens and not table.admit():
                values[0].i32 = _refused(
                    run,
                    table.refusals,
                    f"the run holds {table.limit} open descriptors, the most it may: "
                    "path_open answers EMFILE until it closes some",
                    ERRNO_MFILE,
                )
                return 0
            if files.forward is None and not _setup(caller_ptr, files):
                values[0].i32 = ERRNO_FAULT
                return 0
            forward = files.forward
            assert forward is not None
            context = ffi.context(caller_ptr)
            budget = files.budget
            if charge is not None and budget is not None:
                cost = charge(context, forward.memory, values)
                if isinstance(cost, int):  # an errno: refused before anything was charged or forwarded
                    values[0].i32 = cost
                    return 0
                if cost != (0, 0) and not budget.admit(*cost):
                    values[0].i32 = _refused(
                        run,
                        budget.refusals,
                        f"the run's file system is full: it holds at most {budget.describe()}",
                        ERRNO_NOSPC,
                    )
                    return 0
            # What the table needs from the arguments, read before the call leaves its result in values[0].
            second = values[1].i32 & U32 if renumbers else 0
            opened_at = values[8].i32 & U32 if opens else 0
            func = forward.funcs.get(name)
            if func is None:
                func = files.guard.function(caller_ptr, forward, name)
            trap = ffi.call_in_place(context, func, values, count)
            if trap:
                # WASI ended the call with an error or a trap (bad arguments; or the run's deadline, a cancel
                # or its fuel reached inside the guard): the guest gets it, as it would without the guard.
                return trap
            if values[0].i32 == 0:
                if opens:
                    opened = ffi.memory_read(context, forward.memory, opened_at, 4)
                    if opened is not None:  # WASI wrote it there, so it is in memory
                        table.opened(int.from_bytes(opened, "little"))
                elif closes:
                    table.closed(first)
                elif renumbers:
                    table.renumbered(first, second)
        except BaseException as exc:
            values[0].i32 = _fail(caller_ptr, run, name, exc)
        return 0

    return ffi.RawCallback(call)


# The callbacks live as long as the process (Linkers hold pointers to them).
CALLBACKS: dict[str, object] = {name: _raw(name) for name in SIGNATURES}


def define(linker: wasmtime.Linker, scratch: bool) -> None:
    """Define our calls over wasmtime's own in a Linker for runs with a preopen: the descriptor table's and
    stdio's, and with `scratch` the charged ones too."""
    for name, callback in CALLBACKS.items():
        if scratch or name in TABLE_CALLS:
            ffi.define_raw(linker, WASI_MODULE, name, func_type(name), callback)
