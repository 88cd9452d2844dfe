"""The WASI calls that can put bytes or entries on the host's disk, charged to the run's scratch budget.

A Linker of a tool set with `scratch` defines these over wasmtime's own: each charges ScratchBudget
(scratch.py) an upper bound of what the call can add and answers ENOSPC when it does not fit, else does
exactly what wasmtime's WASI does by calling it. A host function cannot call wasmtime's WASI itself
(the WASI function finds the guest's memory through its caller, and a call from the host has none), so
each run that makes such a call gets a guard: a tiny wasm instance that imports the guest's memory and
the WASI functions, exports the memory, and forwards each call. It is made at the run's first charged
call (a run that writes no file pays nothing) and dropped with the store.

stdout and stderr writes are not charged (they go to the run's output, not to disk) unless a file took
their descriptor (`fd_renumber` onto 0-2, or `path_open` answering one after a `fd_close`).
`fd_allocate` is not among them: wasmtime answers it ENOTSUP. Growing a file with
`fd_filestat_set_size` allocates nothing (a sparse file), so it is not charged either.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from dataclasses import dataclass

import wasmtime

from services.executor import guest
from services.executor.sandbox import ffi
from services.executor.sandbox.hostcall import host_failure
from services.executor.sandbox.scratch import BLOCK, ScratchBudget
from services.executor.sandbox.state import CURRENT, RunState

WASI_MODULE = "wasi_snapshot_preview1"
ERRNO_FAULT, ERRNO_INTR, ERRNO_INVAL, ERRNO_NOSPC = 21, 27, 28, 51
OFLAGS_CREAT = 1
MAX_IOVECS = 1024  # IOV_MAX: what libcs send at most; more is EINVAL (never forwarded uncharged)

I32, I64 = ffi.KIND_I32, ffi.KIND_I64
# name -> parameter kinds (each returns an i32 errno)
SIGNATURES: dict[str, tuple[int, ...]] = {
    "fd_write": (I32, I32, I32, I32),
    "fd_pwrite": (I32, I32, I32, I64, I32),
    "path_open": (I32, I32, I32, I32, I32, I64, I64, I32, I32),
    "path_create_directory": (I32, I32, I32),
    "path_symlink": (I32, I32, I32, I32, I32),
    "path_link": (I32, I32, I32, I32, I32, I32, I32),
    "path_rename": (I32, I32, I32, I32, I32, I32),
    "fd_renumber": (I32, I32),
}
_WAT_TYPES = {I32: "i32", I64: "i64"}


def guard_wat() -> str:
    """The guard module: the guest's memory imported and exported as `memory`, each call forwarded."""
    imports, funcs = [], []
    for name, kinds in SIGNATURES.items():
        params = " ".join(_WAT_TYPES[k] for k in kinds)
        imports.append(f'(import "{WASI_MODULE}" "{name}" (func ${name} (param {params}) (result i32)))')
        body = " ".join(f"local.get {i}" for i in range(len(kinds)))
        funcs.append(f'(func (export "{name}") (param {params}) (result i32) {body} call ${name})')
    return (
        "(module\n"
        + '(import "env" "memory" (memory 0))\n'
        + "\n".join(imports)
        + "\n"
        + ('(export "memory" (memory 0))\n' + "\n".join(funcs) + ")")
    )


def func_type(name: str) -> wasmtime.FuncType:
    return wasmtime.FuncType(
        [wasmtime.ValType.i64() if k == I64 else wasmtime.ValType.i32() for k in SIGNATURES[name]],
        [wasmtime.ValType.i32()],
    )


@dataclass
class Forward:
    """One run's guard instance: the guest's memory and each call forwarded to wasmtime's WASI."""

    memory: wasmtime.Memory
    calls: dict[str, ffi.IntCall]


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
        calls = {}
        for name, kinds in SIGNATURES.items():
            func = exports[name]
            assert isinstance(func, wasmtime.Func)
            calls[name] = ffi.IntCall(func, kinds)
        return Forward(memory, calls)


def _forward(caller: wasmtime.Caller, budget: ScratchBudget, name: str, args: tuple[int, ...]) -> int:
    forward = budget.forward
    if forward is None:
        assert isinstance(budget.source, Guard)
        forward = budget.forward = budget.source.forward(caller)
        if forward is None:
            return ERRNO_FAULT
    assert isinstance(forward, Forward)
    result = forward.calls[name](caller, args)
    # A failed forward is the run's deadline, a cancel or its fuel reached inside the guard: the guest
    # is stopped at its next check anyway.
    return ERRNO_INTR if result is None else result


def _refuse(run: RunState, budget: ScratchBudget) -> int:
    if budget.refusals == 1:
        run.add_log("warn", f"the run's file system is full: it holds at most {budget.describe()}".encode())
    return ERRNO_NOSPC


def _charged(
    name: str, charge: Callable[[wasmtime.Caller, RunState, ScratchBudget, tuple[int, ...]], tuple[int, int] | int]
) -> Callable[..., int]:
    def call(caller: wasmtime.Caller, *args: int) -> int:
        run: RunState = CURRENT.run
        try:
            budget = run.scratch
            assert budget is not None, "fs_calls are linked only for runs granted scratch"
            cost = charge(caller, run, budget, args)
            if isinstance(cost, int):  # an errno: refused before anything was charged or forwarded
                return cost
            if cost != (0, 0) and not budget.admit(*cost):
                return _refuse(run, budget)
            return _forward(caller, budget, name, args)
        except BaseException as exc:
            return host_failure(caller, run, name, exc)

    return call


def _write_cost(
    caller: wasmtime.Caller, budget: ScratchBudget, fd: int, iovs: int, count: int
) -> tuple[int, int] | int:
    if fd <= 2 and not budget.stdio_taken:
        return 0, 0
    count &= guest.U32
    if count > MAX_IOVECS:
        return ERRNO_INVAL
    total = _iovec_bytes(caller, budget, iovs & guest.U32, count)
    return ERRNO_FAULT if total is None else (total + 2 * BLOCK, 0)


def _iovec_bytes(caller: wasmtime.Caller, budget: ScratchBudget, iovs: int, count: int) -> int | None:
    """The bytes `count` iovecs at `iovs` name; None when they lie outside the guest's memory. Reads
    through the run's Memory (looked up once: guest.read looks the export up on every call)."""
    forward = budget.forward
    if not isinstance(forward, Forward):
        vecs = guest.read_u32_pairs(caller, iovs, count)
        return None if vecs is None else sum(length for _, length in vecs)
    memory = forward.memory
    size = memory.data_len(caller)  # read afresh: a memory.grow may have moved or resized it
    if iovs + count * 8 > size:
        return None
    if not count:
        return 0
    raw = ctypes.string_at(ctypes.addressof(memory.data_ptr(caller).contents) + iovs, count * 8)
    lengths: tuple[int, ...] = struct.unpack_from(f"<{count * 2}I", raw)[1::2]
    return sum(lengths)


def _fd_write(
    caller: wasmtime.Caller, run: RunState, budget: ScratchBudget, a: tuple[int, ...]
) -> tuple[int, int] | int:
    return _write_cost(caller, budget, a[0], a[1], a[2])


def _path_open(caller: wasmtime.Caller, run: RunState, budget: ScratchBudget, a: tuple[int, ...]) -> tuple[int, int]:
    return (BLOCK, 1) if a[4] & OFLAGS_CREAT else (0, 0)


def _new_entry(
    _caller: wasmtime.Caller, _run: RunState, _budget: ScratchBudget, _a: tuple[int, ...]
) -> tuple[int, int]:
    return BLOCK, 1


def _directory_growth(
    _caller: wasmtime.Caller, _run: RunState, _b: ScratchBudget, _a: tuple[int, ...]
) -> tuple[int, int]:
    return BLOCK, 0


def _renumber(_caller: wasmtime.Caller, _run: RunState, budget: ScratchBudget, a: tuple[int, ...]) -> tuple[int, int]:
    if a[1] & guest.U32 <= 2:
        budget.stdio_taken = True  # from now on writes to 0-2 may reach a file: charge them
    return 0, 0


def _opened(call: Callable[..., int]) -> Callable[..., int]:
    """path_open: a descriptor 0-2 handed to a file (after the guest closed stdio) makes writes to it charged."""

    def wrapped(caller: wasmtime.Caller, *args: int) -> int:
        result = call(caller, *args)
        if result == 0:
            run: RunState = CURRENT.run
            opened = guest.read(caller, args[8], 4)
            if run.scratch is not None and (opened is None or int.from_bytes(opened, "little") <= 2):
                run.scratch.stdio_taken = True
        return result

    return wrapped


CHARGES = {
    "fd_write": _fd_write,
    "fd_pwrite": _fd_write,
    "path_open": _path_open,
    "path_create_directory": _new_entry,
    "path_symlink": _new_entry,
    "path_link": _new_entry,
    "path_rename": _directory_growth,
    "fd_renumber": _renumber,
}


def shadows() -> list[tuple[str, wasmtime.FuncType, Callable[..., int]]]:
    """The WASI functions a Linker of a tool set with `scratch` defines over wasmtime's own."""
    found = []
    for name, charge in CHARGES.items():
        func = _charged(name, charge)
        found.append((name, func_type(name), _opened(func) if name == "path_open" else func))
    return found
