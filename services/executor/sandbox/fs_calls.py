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
Even so a forwarded write cost ~6-7 us over the guest calling WASI itself, so a module compiled for
`scratch` (scratch_rewrite.py) gets its writes from a per-run wasm guard instead (FastGuard below), which
spends a prepaid allowance without a host call and hands the host `fd_write`/`fd_pwrite` below only what
it cannot decide (their slow path: they charge, answer and refill the allowance).
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
from services.executor.sandbox.wasi_files import STDERR, STDIN, Descriptors, RunFiles

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


# The scratch cap's fast path (scratch_rewrite.py): a module whose WASI fd_write/fd_pwrite are imported
# from RESERVED_MODULE gets them, per run, from a stub instance (STUB_WAT) whose two functions call
# through its table into one instance of this guard, made after the guest over the guest's own memory
# (the guest cannot import a function of an instance that needs its memory first: the table breaks the
# cycle). The guard checks each write against a prepaid allowance in wasm and calls WASI's own function
# directly: no host call per write. What it cannot decide it hands to fs_calls' host function
# (`SLOW_MODULE`), which answers exactly as the host path does (stdio, EINVAL, EFAULT, the charge,
# ENOSPC) and refills the allowance:
# - `fast` is 0 while a descriptor above 2 may be stdout or stderr (fd_renumber moved one there): such a
#   write is the run's output, which only the host function sends to the executor's stdio (output cap);
# - descriptors 0-2 always go to the host (stdout, stderr, or a file that took their number);
# - more than MAX_IOVECS iovecs, or an iovec array not inside memory (checked against memory.size, so the
#   guard never traps where the host answered an errno), go to the host;
# - a write costs what fs_calls._write charges: the iovec lengths plus two blocks, and only when that fits
#   in the allowance is it subtracted and the write made here.
SLOW_MODULE = "agentfactory:scratch-slow"
ROUTED = ("fd_write", "fd_pwrite")
FAST_WAT = f"""(module
  (import "env" "memory" (memory 0))
  (import "{WASI_MODULE}" "fd_write" (func $wasi_write (param i32 i32 i32 i32) (result i32)))
  (import "{WASI_MODULE}" "fd_pwrite" (func $wasi_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "{SLOW_MODULE}" "fd_write" (func $slow_write (param i32 i32 i32 i32) (result i32)))
  (import "{SLOW_MODULE}" "fd_pwrite" (func $slow_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (global $allowance (export "allowance") (mut i64) (i64.const 0))
  (global $fast (export "fast") (mut i32) (i32.const 0))
  (export "memory" (memory 0))
  ;; The write's charge, taken from the allowance; -1 (nothing taken) when the host must answer.
  (func $charge (param $fd i32) (param $iovs i32) (param $n i32) (result i64)
    (local $end i64) (local $sum i64)
    (if (i32.or (i32.eqz (global.get $fast)) (i32.le_u (local.get $fd) (i32.const 2)))
      (then (return (i64.const -1))))
    (if (i32.gt_u (local.get $n) (i32.const {MAX_IOVECS})) (then (return (i64.const -1))))
    (local.set $end (i64.add (i64.extend_i32_u (local.get $iovs))
                             (i64.shl (i64.extend_i32_u (local.get $n)) (i64.const 3))))
    (if (i64.gt_u (local.get $end) (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
      (then (return (i64.const -1))))
    (local.set $sum (i64.const {2 * BLOCK}))
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $sum (i64.add (local.get $sum) (i64.load32_u offset=4 (local.get $iovs))))
      (local.set $iovs (i32.add (local.get $iovs) (i32.const 8)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $next)))
    (if (i64.gt_u (local.get $sum) (global.get $allowance)) (then (return (i64.const -1))))
    (global.set $allowance (i64.sub (global.get $allowance) (local.get $sum)))
    (local.get $sum))
  (func (export "fd_write") (param i32 i32 i32 i32) (result i32)
    (if (result i32) (i64.ge_s (call $charge (local.get 0) (local.get 1) (local.get 2)) (i64.const 0))
      (then (call $wasi_write (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
      (else (call $slow_write (local.get 0) (local.get 1) (local.get 2) (local.get 3)))))
  (func (export "fd_pwrite") (param i32 i32 i32 i64 i32) (result i32)
    (if (result i32) (i64.ge_s (call $charge (local.get 0) (local.get 1) (local.get 2)) (i64.const 0))
      (then (call $wasi_pwrite (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
      (else (call $slow_pwrite (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4))))))
"""
STUB_WAT = """(module
  (type $write (func (param i32 i32 i32 i32) (result i32)))
  (type $pwrite (func (param i32 i32 i32 i64 i32) (result i32)))
  (table (export "targets") 2 2 funcref)
  (func (export "fd_write") (type $write)
    (call_indirect (type $write) (local.get 0) (local.get 1) (local.get 2) (local.get 3) (i32.const 0)))
  (func (export "fd_pwrite") (type $pwrite)
    (call_indirect (type $pwrite) (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)
      (i32.const 1))))
"""
# The most a run prepays at once: 85 writes of 4 KiB (each charged 12 KiB) between two host calls, and
# never more than still fits (ScratchBudget.prepay).
PREPAY_BYTES = 1024 * 1024


@dataclass
class FastRun:
    """One run's wasm guard: its allowance and flag globals (set by the host on its slow path)."""

    context: ffi.RawContext
    allowance: ffi.RawGlobal
    flag: ffi.RawGlobal
    budget: ScratchBudget
    on: bool = True
    slow_calls: int = 0  # the routed writes the guard handed to the host (tests show the fast path works)

    def take(self) -> int:
        """The unspent allowance, now zero (ScratchBudget.take_prepaid)."""
        unspent = ffi.global_get(self.context, self.allowance)
        if unspent:
            ffi.global_set(self.context, self.allowance, 0, wide=True)
        return unspent

    def refill(self) -> None:
        self.budget.used_bytes -= self.take()
        ffi.global_set(self.context, self.allowance, self.budget.prepay(PREPAY_BYTES), wide=True)

    def follow(self, table: Descriptors) -> None:
        """The flag after the table changed: off while a descriptor above 2 is stdout or stderr."""
        on = all(fd <= STDERR for fd in table.stdio)
        if on != self.on:
            self.on = on
            ffi.global_set(self.context, self.flag, int(on), wide=False)


@dataclass
class Stub:
    """A run's stub instance: the functions the guest imports, and the table they call through."""

    functions: dict[str, ffi.RawExtern]
    targets: ffi.RawExtern


class FastGuard:
    """The process's compiled stub and guard modules, and the Linker (WASI's own calls, the slow path) the
    guard takes its functions from."""

    def __init__(self, engine: wasmtime.Engine, wasi: wasmtime.Linker) -> None:
        for name in ROUTED:
            ffi.define_raw(wasi, SLOW_MODULE, name, func_type(name), CALLBACKS[name])
        functions = [(module, name) for module in (WASI_MODULE, SLOW_MODULE) for name in ROUTED]
        self._imports = ffi.RawImports(wasi, wasmtime.Module(engine, FAST_WAT), functions)
        self._stub = wasmtime.Module(engine, STUB_WAT)

    def stub(self, store: wasmtime.Store) -> Stub:
        """The run's stub, for the guest to import (its table empty until `start`: the guest must not run
        before, and does not: instantiation runs no guest code, the start function being detached)."""
        instance = ffi.new_instance(store, self._stub)
        return Stub(
            {name: ffi.export(store, instance, name) for name in ROUTED}, ffi.export(store, instance, "targets")
        )

    def start(self, store: wasmtime.Store, memory: wasmtime.Memory, files: RunFiles, stub: Stub) -> None:
        """The run's guard over `memory` (the guest's), prepaid and on, in the stub's table."""
        budget = files.budget
        assert budget is not None, "a routed module links only for a tool set with scratch"
        instance = self._imports.instantiate(store, memory)
        fast = FastRun(
            ffi.store_context(store),
            ffi.extern_global(ffi.export(store, instance, "allowance")),
            ffi.extern_global(ffi.export(store, instance, "fast")),
            budget,
        )
        files.fast = fast
        budget.take_prepaid = fast.take
        ffi.global_set(fast.context, fast.flag, 1, wide=False)
        fast.refill()
        for index, name in enumerate(ROUTED):
            ffi.table_set_func(store, stub.targets, index, ffi.export(store, instance, name))


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
    routed = name in ROUTED

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
                fast = files.fast
                if routed and fast is not None:  # the wasm guard's allowance ran out (or it was off)
                    fast.slow_calls += 1
                    if fast.on:
                        fast.refill()
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
                if files.fast is not None and (opens or closes or renumbers):
                    files.fast.follow(table)
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
