"""The WASI calls that can put bytes or entries on the host's disk, charged to the run's scratch budget.

A Linker of a tool set with `scratch` defines these over wasmtime's own: each charges ScratchBudget
(scratch.py) an upper bound of what the call can add and answers ENOSPC when it does not fit, else does
exactly what wasmtime's WASI does by calling it. A host function cannot call wasmtime's WASI itself
(the WASI function finds the guest's memory through its caller, and a call from the host has none), so
each run that makes such a call gets a guard: a tiny wasm instance that imports the guest's memory and
the WASI functions, exports the memory, and forwards each call. It is made at the run's first charged
call (a run that writes no file pays nothing) and dropped with the store.

These are on the path of every file write of a scratch run, so they are raw host functions (ffi.py):
arguments read and the guard called in place, no Val per argument (about 3 us a call instead of ~15).

stdout and stderr writes are not charged (they go to the run's output, not to disk) and not forwarded:
the executor's own stdio function (stdio.py) takes them, as in runs without `scratch`, unless a file took
their descriptor (`fd_renumber` onto 0-2, or `path_open` answering one after a `fd_close`); then they are
charged and forwarded like any write.
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
from services.executor.sandbox.scratch import BLOCK, ScratchBudget
from services.executor.sandbox.state import CURRENT, RunState

WASI_MODULE = "wasi_snapshot_preview1"
ERRNO_FAULT, ERRNO_INVAL, ERRNO_NOSPC = 21, 28, 51
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
}


def guard_wat() -> str:
    """The guard module: the guest's memory imported and exported as `memory`, each call forwarded."""
    imports, funcs = [], []
    for name, types in SIGNATURES.items():
        params = " ".join(types)
        imports.append(f'(import "{WASI_MODULE}" "{name}" (func ${name} (param {params}) (result i32)))')
        body = " ".join(f"local.get {i}" for i in range(len(types)))
        funcs.append(f'(func (export "{name}") (param {params}) (result i32) {body} call ${name})')
    head = '(module\n(import "env" "memory" (memory 0))\n'
    return head + "\n".join(imports) + '\n(export "memory" (memory 0))\n' + "\n".join(funcs) + ")"


def func_type(name: str) -> wasmtime.FuncType:
    kinds = {I32: wasmtime.ValType.i32(), I64: wasmtime.ValType.i64()}
    return wasmtime.FuncType([kinds[t] for t in SIGNATURES[name]], [wasmtime.ValType.i32()])


@dataclass
class Forward:
    """One run's guard instance: the guest's memory and each call's guard function."""

    memory: wasmtime.Memory
    funcs: dict[str, ffi.RawFunc]


class Guard:
    """The process's guard module and a WASI-only Linker to take its imports from, per store."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self.module = wasmtime.Module(engine, guard_wat())
        self.wasi = wasmtime.Linker(engine)
        self.wasi.define_wasi()

    def forward(self, caller: wasmtime.Caller) -> Forward | None:
        """None when the guest has no memory export (link() refuses such a module; kept for safety)."""
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            return None
        externs: list[wasmtime.Func | wasmtime.Memory] = [memory]
        for name in SIGNATURES:
            found = self.wasi.get(caller, WASI_MODULE, name)
            assert isinstance(found, wasmtime.Func)
            externs.append(found)
        exports = wasmtime.Instance(caller, self.module, externs).exports(caller)
        funcs = {}
        for name in SIGNATURES:
            func = exports[name]
            assert isinstance(func, wasmtime.Func)
            funcs[name] = func._func
        return Forward(memory, funcs)


# A charge: (bytes, entries) to admit before forwarding, or an errno to answer without forwarding.
Charge = Callable[[ffi.RawContext, ScratchBudget, ffi.RawValues], "tuple[int, int] | int"]


def _write(context: ffi.RawContext, budget: ScratchBudget, values: ffi.RawValues) -> tuple[int, int] | int:
    iovs, count = values[1].i32 & U32, values[2].i32 & U32
    if count > MAX_IOVECS:
        return ERRNO_INVAL
    forward = budget.forward
    assert isinstance(forward, Forward)
    raw = ffi.memory_read(context, forward.memory, iovs, count * 8)
    if raw is None:
        return ERRNO_FAULT
    lengths: tuple[int, ...] = struct.unpack_from(f"<{count * 2}I", raw)[1::2]
    return sum(lengths) + 2 * BLOCK, 0  # a partial block at each end of the range


def _open(_context: ffi.RawContext, _budget: ScratchBudget, values: ffi.RawValues) -> tuple[int, int]:
    return (BLOCK, 1) if values[4].i32 & OFLAGS_CREAT else (0, 0)


def _new_entry(_context: ffi.RawContext, _budget: ScratchBudget, _values: ffi.RawValues) -> tuple[int, int]:
    return BLOCK, 1


def _directory_growth(_context: ffi.RawContext, _budget: ScratchBudget, _values: ffi.RawValues) -> tuple[int, int]:
    return BLOCK, 0


def _renumber(_context: ffi.RawContext, budget: ScratchBudget, values: ffi.RawValues) -> tuple[int, int]:
    if values[1].i32 & U32 <= 2:
        budget.stdio_taken = True  # from now on writes to 0-2 may reach a file: charge them
    return 0, 0


CHARGES: dict[str, Charge] = {
    "fd_write": _write,
    "fd_pwrite": _write,
    "path_open": _open,
    "path_create_directory": _new_entry,
    "path_symlink": _new_entry,
    "path_link": _new_entry,
    "path_rename": _directory_growth,
    "fd_renumber": _renumber,
}


def _setup(caller_ptr: ffi.RawCaller, run: RunState, budget: ScratchBudget) -> bool:
    """The run's guard, at its first charged call (the slow path, through wasmtime-py's Caller)."""
    caller = ffi.wrap_caller(caller_ptr)
    try:
        assert isinstance(budget.source, Guard)
        budget.forward = budget.source.forward(caller)
        return budget.forward is not None
    finally:
        caller._invalidate()


def _stdio(caller_ptr: ffi.RawCaller, values: ffi.RawValues) -> int:
    caller = ffi.wrap_caller(caller_ptr)
    try:
        return stdio.fd_write(caller, values[0].i32, values[1].i32, values[2].i32, values[3].i32)
    finally:
        caller._invalidate()


def _fail(caller_ptr: ffi.RawCaller, run: RunState, name: str, exc: BaseException) -> int:
    caller = ffi.wrap_caller(caller_ptr)
    try:
        return host_failure(caller, run, name, exc)
    finally:
        caller._invalidate()


def _raw(name: str, charge: Charge) -> object:
    count = max(len(SIGNATURES[name]), 1)
    opens = name == "path_open"
    writes = name == "fd_write"

    def call(_env: object, caller_ptr: ffi.RawCaller, values: ffi.RawValues, _n: int) -> int:
        # Never raises (a raw callback's exception would be lost and its result garbage); answers in values[0].
        run: RunState = CURRENT.run
        try:
            budget = run.scratch
            assert budget is not None, "fs_calls are linked only for runs granted scratch"
            if writes and values[0].i32 in (1, 2) and not budget.stdio_taken:
                # stdout/stderr are the run's output, not disk: the executor's own stdio function takes
                # them (the output cap stops the guest at once), with no forward to WASI.
                values[0].i32 = _stdio(caller_ptr, values)
                return 0
            if budget.forward is None and not _setup(caller_ptr, run, budget):
                values[0].i32 = ERRNO_FAULT
                return 0
            forward = budget.forward
            assert isinstance(forward, Forward)
            context = ffi.context(caller_ptr)
            cost = charge(context, budget, values)
            if isinstance(cost, int):  # an errno: refused before anything was charged or forwarded
                values[0].i32 = cost
                return 0
            if cost != (0, 0) and not budget.admit(*cost):
                if budget.refusals == 1:
                    run.add_log("warn", f"the run's file system is full: it holds at most {budget.describe()}".encode())
                values[0].i32 = ERRNO_NOSPC
                return 0
            opened_at = values[8].i32 & U32 if opens else 0
            trap = ffi.call_in_place(context, forward.funcs[name], values, count)
            if trap:
                # WASI ended the call with an error or a trap (bad arguments; or the run's deadline, a cancel
                # or its fuel reached inside the guard): the guest gets it, as it would without the guard.
                return trap
            if opens and values[0].i32 == 0:
                opened = ffi.memory_read(context, forward.memory, opened_at, 4)
                if opened is None or int.from_bytes(opened, "little") <= 2:
                    budget.stdio_taken = True  # a file got descriptor 0-2 (after the guest closed stdio)
        except BaseException as exc:
            values[0].i32 = _fail(caller_ptr, run, name, exc)
        return 0

    return ffi.RawCallback(call)


# The callbacks live as long as the process (Linkers hold pointers to them).
CALLBACKS: dict[str, object] = {name: _raw(name, charge) for name, charge in CHARGES.items()}


def define(linker: wasmtime.Linker) -> None:
    """Define the charged calls over wasmtime's own in a Linker of a tool set with `scratch`."""
    for name, callback in CALLBACKS.items():
        ffi.define_raw(linker, WASI_MODULE, name, func_type(name), callback)
