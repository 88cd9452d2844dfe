"""The process's one Engine, its epoch ticker, a Linker per granted tool set, and one run on one thread.

Budget and how each part is enforced:
- fuel: `Store.set_fuel(limits.fuel)`; running out traps with OUT_OF_FUEL.
- memory: store limits (`memory_size`, tables, table elements, instances, memories). A too-large initial
  memory fails instantiation; a refused `memory.grow` returns -1 to the guest (wasmtime's C API cannot
  make it trap), so a run that then fails with its memory within one growth step of the limit is
  reported as the memory limit (outcome.py).
- wall clock and cancellation: epoch interruption. The engine's epoch is advanced by one ticker thread
  every `epoch_tick_ms`. Each store registers an epoch deadline callback (ffi.py) and re-arms a one-tick
  deadline. The callback runs on the guest's own thread at the next epoch check after a tick, looks at
  the run's wall-clock deadline and its cancel flag (a plain attribute written by any thread, read under
  the GIL) and either continues for one more tick or ends the run. So a run stops within one tick of its
  deadline or of a cancel, also inside instantiation (the wasm start function), and no thread ever
  touches another thread's Store (Stores are not thread-safe). Host calls, which epochs cannot reach,
  check the same two things themselves (hostcall.py, wasi.py, stdio.py, http_fetch.py).
- stack: `Config.max_wasm_stack`; overflow traps with STACK_OVERFLOW.
- output bytes and tool calls: counted in host functions; a trip zeroes the store's fuel (hostcall.py).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import wasmtime

from services.common.errors import FailedPrecondition
from services.executor.events import Finished
from services.executor.sandbox import ffi, fs_calls, stdio, wasi
from services.executor.sandbox.abi import TOOL_FUNCTIONS, TOOL_MODULE, host_function
from services.executor.sandbox.compile import CompileBudget, compile_module
from services.executor.sandbox.config import EngineSettings, ScratchSettings
from services.executor.sandbox.outcome import classify
from services.executor.sandbox.scratch import remove_tree
from services.executor.sandbox.scratch_rewrite import RESERVED_MODULE
from services.executor.sandbox.start import START_EXPORT
from services.executor.sandbox.state import MAX_LOG_BYTES, RunState, bind, current_or_none
from services.executor.sandbox.wasi_files import MAX_DESCRIPTORS
from services.templates.wasm_structure import ModuleBounds

if TYPE_CHECKING:  # wasmtime-py does not export the class of Instance.exports()
    from wasmtime._instance import InstanceExports

log = logging.getLogger(__name__)

WASI_MODULE = "wasi_snapshot_preview1"
MAX_TABLE_ELEMENTS = 100_000
MAX_TABLES = 4
# The guest, a run with a preopen's guard instances (one per forwarded WASI call it makes, fs_calls.py),
# and a routed module's stub and wasm guard (fs_calls.FastGuard; the stub's two-entry table is one more
# table than the guest's own, allowed to such a run only).
MAX_INSTANCES = 1 + len(fs_calls.SIGNATURES) + 2
ROUTED_IMPORTS = frozenset(fs_calls.ROUTED)
MAX_MEMORIES = 1

# WASI calls that can hold the calling thread for long: poll_oneoff sleeps on a clock subscription, and
# random_get, though capped at 64 KiB a call, is called in loops by hostile modules. Ours keep to the
# run's deadline, but a run that may spend its whole deadline in them must not run on the event loop's
# thread (the inline path, service.py).
BLOCKING_WASI_IMPORTS = frozenset({"poll_oneoff", "random_get"})


# A ctypes prototype (CFUNCTYPE) is untyped as a decorator; the function itself is typed.
@ffi.EpochCallback  # type: ignore[untyped-decorator]
def _on_epoch(
    _context: object, _data: object, delta: ctypes._Pointer[ctypes.c_uint64], kind: ctypes._Pointer[Any]
) -> int:
    """Runs on the guest's thread after each tick. Returning an error ends the run."""
    try:
        run = current_or_none()
        if run is None:
            return ffi.interrupt(b"agentfactory: no run is bound to this thread")
        if run.cancelled:
            return ffi.interrupt(b"agentfactory: run cancelled")
        if time.monotonic() >= run.deadline:
            run.deadline_hit = True
            return ffi.interrupt(b"agentfactory: wall-clock deadline passed")
        if run.tripped is not None:
            return ffi.interrupt(b"agentfactory: limit tripped")
        run.maybe_flush()
        delta[0] = 1
        kind[0] = ffi.UPDATE_CONTINUE
        return 0
    except BaseException:  # a ctypes callback must not raise; stopping the run is the safe answer
        return ffi.interrupt(b"agentfactory: internal error in the epoch callback")


@dataclass
class Prepared:
    """A compiled module linked for one tool set: what a run instantiates."""

    module: wasmtime.Module
    # None for a module whose writes are routed through the run's wasm guard (scratch_rewrite.py): two of
    # its functions are the run's own objects, which an InstancePre cannot hold.
    pre: wasmtime.InstancePre | None
    # True when a run can only compute and use in-memory stdio: no granted tool, no WASI call that can
    # wait. Such a run may go on the event loop's thread under a small fuel budget (see service.py).
    pure: bool = False
    start: str | None = None  # the detached wasm start function's export, called right after instantiation
    routed: bool = False  # its writes go through the run's wasm guard (scratch_rewrite.py)
    wasi_fs: bool = False  # the Linker it was linked with (a routed module is instantiated by name)
    tools: frozenset[str] = frozenset()


class Sandbox:
    """The process's one Engine, its epoch ticker and a Linker per granted tool set."""

    def __init__(
        self,
        settings: EngineSettings,
        bounds: ModuleBounds | None = None,
        budget: CompileBudget | None = None,
        scratch: ScratchSettings | None = None,
        max_descriptors: int = MAX_DESCRIPTORS,
    ) -> None:
        self.settings = settings
        self.bounds = bounds or ModuleBounds()  # the policy's `module:` bounds, applied again before compiling
        self.budget = budget or CompileBudget()
        self.scratch = scratch or ScratchSettings()  # where runs granted `scratch` get their directory, its cap
        self.engine = wasmtime.Engine(settings.config())
        self.fingerprint = settings.fingerprint()
        self._tick_s = settings.epoch_tick_ms / 1000
        self._linkers: dict[tuple[frozenset[str], bool], wasmtime.Linker] = {}
        # Per thread, Linkers like those that a routed module's run instantiates through (see _instantiate).
        self._local = threading.local()
        self.max_descriptors = max_descriptors  # open at once by a run with a preopen (wasi_files.py)
        self._fs_guard = fs_calls.Guard(self.engine)  # forwards the WASI calls fs_calls.py checks first
        self._fast_guard = fs_calls.FastGuard(self.engine, self._fs_guard.wasi)  # routed writes' wasm guard
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="epoch-ticker", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self._tick_s):
            self.engine.increment_epoch()

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=1)

    # -- compile and link --
    def compile(self, wasm: bytes, scratch: bool = False) -> wasmtime.Module:
        """Blocking. FailedPrecondition naming the rule for a module past a bound or a compile budget.
        `scratch`: the module is for a tool set granting `scratch` (its writes checked in wasm when it
        qualifies, scratch_rewrite.py); such a module links only for such a tool set."""
        return compile_module(self.engine, self.settings, wasm, self.bounds, self.budget, scratch)

    def deserialize(self, serialized: bytes) -> wasmtime.Module:
        return wasmtime.Module.deserialize(self.engine, serialized)

    def linker(self, tools: frozenset[str], wasi_fs: bool = False) -> wasmtime.Linker:
        """`wasi_fs`: WASI owns stdin and the file descriptors (template files mounted) even without
        `scratch`; stdout and stderr stay ours (fs_calls.py)."""
        key = (tools, wasi_fs)
        with self._lock:
            linker = self._linkers.get(key)
            if linker is None:
                linker = self._linkers[key] = self._new_linker(tools, wasi_fs)
            return linker

    def _new_linker(self, tools: frozenset[str], wasi_fs: bool) -> wasmtime.Linker:
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        linker.allow_shadowing = True
        if "scratch" not in tools and not wasi_fs:
            ffi.define_raw(linker, WASI_MODULE, "fd_write", stdio.fd_type(), stdio.RAW_FD_WRITE)
            ffi.define_raw(linker, WASI_MODULE, "fd_read", stdio.fd_type(), stdio.RAW_FD_READ)
        for name, ty, func in wasi.shadows(tools):
            linker.define_func(WASI_MODULE, name, ty, func, access_caller=True)
        if "scratch" in tools or wasi_fs:  # the descriptor bound; with scratch, the disk cap too
            fs_calls.define(linker, scratch="scratch" in tools)
        for function in TOOL_FUNCTIONS.values():
            if function.tool in tools:
                func = host_function(function)
                linker.define_func(TOOL_MODULE, function.name, function.func_type(), func, access_caller=True)
        return linker

    def _thread_linker(self, tools: frozenset[str], wasi_fs: bool) -> wasmtime.Linker:
        """This thread's Linker for a routed module's runs with this tool set. A routed module imports its
        memory and the guard's fd_write/fd_pwrite, which belong to the run's store: they are defined in
        this Linker right before each instantiation (shadowing the previous run's), so a Linker never
        resolves an item of a store other than the one instantiating, and no other thread ever sees it.
        The shared Linkers (`linker`) never hold a store's item: one from a closed store would make
        wasmtime panic, which aborts the process."""
        linkers: dict[tuple[frozenset[str], bool], wasmtime.Linker] | None = getattr(self._local, "linkers", None)
        if linkers is None:
            linkers = self._local.linkers = {}
        linker = linkers.get((tools, wasi_fs))
        if linker is None:
            linker = linkers[(tools, wasi_fs)] = self._new_linker(tools, wasi_fs)
        return linker

    def _instantiate(self, prepared: Prepared, store: wasmtime.Store, run: RunState) -> wasmtime.Instance:
        """A routed module's instance: the run's stub (the guest's fd_write/fd_pwrite), the guest, then the
        guard over the guest's memory, put in the stub's table before any guest code runs."""
        assert run.files is not None, "a routed module links only for a tool set with scratch"
        stub = self._fast_guard.stub(store)
        linker = self._thread_linker(prepared.tools, prepared.wasi_fs)
        for name, func in stub.functions.items():
            ffi.linker_define(linker, store, RESERVED_MODULE, name, func)
        instance = linker.instantiate(store, prepared.module)
        memory = instance.exports(store)["memory"]
        assert isinstance(memory, wasmtime.Memory)  # link() checked the export's type
        self._fast_guard.start(store, memory, run.files, stub)
        return instance

    def link(self, module: wasmtime.Module, tools: frozenset[str], ref: str, wasi_fs: bool = False) -> Prepared:
        """Refuse (FailedPrecondition naming the import) anything the signed manifest does not grant."""
        routed = False
        for imp in module.imports:
            where = f"{imp.module}.{imp.name}"
            if imp.module == RESERVED_MODULE:
                # Only compile(scratch=True) makes such imports (compile refuses a module naming the module
                # itself); they are the run's own memory and guard, which only a `scratch` run has.
                if "scratch" not in tools or imp.name not in ROUTED_IMPORTS:
                    raise FailedPrecondition(
                        f"{ref}: module imports {where}; it was compiled for a tool set with scratch "
                        f"(tools: {', '.join(sorted(tools)) or 'none'})"
                    )
                routed = True
            elif imp.module == TOOL_MODULE:
                function = TOOL_FUNCTIONS.get(imp.name or "")
                if function is None:
                    raise FailedPrecondition(
                        f"{ref}: module imports {where}, which is not an agentfactory tool function "
                        f"(known: {', '.join(sorted(TOOL_FUNCTIONS))})"
                    )
                if function.tool not in tools:
                    raise FailedPrecondition(
                        f"{ref}: module imports {where} (tool {function.tool!r}), which the signed manifest does "
                        f"not grant (tools: {', '.join(sorted(tools)) or 'none'})"
                    )
            elif imp.module != WASI_MODULE:
                raise FailedPrecondition(
                    f"{ref}: module imports {where}; only {WASI_MODULE} and granted {TOOL_MODULE} functions are linked"
                )
        exports = {exp.name: exp.type for exp in module.exports}
        if not isinstance(exports.get("_start"), wasmtime.FuncType):
            raise FailedPrecondition(f"{ref}: module does not export a _start function (it must be a WASI command)")
        if not isinstance(exports.get("memory"), wasmtime.MemoryType):
            raise FailedPrecondition(f"{ref}: module does not export its linear memory as 'memory'")
        try:
            pre = None if routed else self.linker(tools, wasi_fs).instantiate_pre(module)
            if routed:
                self._check_routed(module, tools, wasi_fs)
        except wasmtime.WasmtimeError as exc:
            raise FailedPrecondition(f"{ref}: module cannot be linked: {' '.join(str(exc).split())}") from exc
        pure = (
            not tools
            and not wasi_fs
            and not any(imp.module == WASI_MODULE and imp.name in BLOCKING_WASI_IMPORTS for imp in module.imports)
        )
        start = START_EXPORT if isinstance(exports.get(START_EXPORT), wasmtime.FuncType) else None
        return Prepared(module, pre, pure, start, routed, wasi_fs, tools)

    def _check_routed(self, module: wasmtime.Module, tools: frozenset[str], wasi_fs: bool) -> None:
        """What instantiate_pre checks for other modules (every import defined, with its type), checked by
        instantiate_pre itself on a Linker of its own where the reserved imports are stand-in host functions
        (a store's items cannot be in an InstancePre). Nothing is instantiated: a throwaway instance
        would allocate what the module declares outside any run's store limits (a table of 2^32 elements
        with a non-null initializer is 32 GiB, written). Raises WasmtimeError naming the import that does
        not link."""
        linker = self._new_linker(tools, wasi_fs)
        for name in fs_calls.ROUTED:
            linker.define_func(RESERVED_MODULE, name, fs_calls.func_type(name), _unused)
        linker.instantiate_pre(module)

    # -- run --
    def run(self, prepared: Prepared, run: RunState) -> Finished:
        """Run once on the calling thread; emits events through spec.sink and returns the last one
        (also emitted). Never raises for anything the guest does. `run` may be cancelled from any thread."""
        spec = run.spec
        started_at = time.monotonic()
        run.deadline = started_at + spec.limits.timeout_ms / 1000
        run.last_flush = started_at
        run.tick = self._tick_s
        store = wasmtime.Store(self.engine)
        scratch: Path | None = None
        instance: wasmtime.Instance | None = None
        initialized = False  # instantiated and the start function (if any) returned
        error: BaseException | None = None
        bind(run)
        try:
            store.set_fuel(spec.limits.fuel)
            store.set_limits(
                memory_size=spec.limits.memory_bytes,
                table_elements=MAX_TABLE_ELEMENTS,
                instances=MAX_INSTANCES,
                tables=MAX_TABLES + prepared.routed,
                memories=MAX_MEMORIES,
            )
            ffi.set_epoch_callback(store, _on_epoch)
            store.set_epoch_deadline(1)
            scratch = stdio.configure_wasi(store, spec, run, self.scratch, self._fs_guard, self.max_descriptors)
            if prepared.pre is not None:
                instance = prepared.pre.instantiate(store)
            else:
                instance = self._instantiate(prepared, store, run)
            exports = instance.exports(store)
            if prepared.start is not None:
                _call(exports, store, prepared.start)
            initialized = True
            run.emit(spec.started)
            _call(exports, store, "_start")
        except BaseException as exc:  # classified below; the guest cannot crash the host
            error = exc
        finally:
            bind(None)
        duration = time.monotonic() - started_at
        try:
            peak = self._memory_size(store, instance)
            fuel_left = run.fuel_at_trip if run.fuel_at_trip is not None else store.get_fuel()
        except BaseException:
            peak, fuel_left = 0, spec.limits.fuel
        finally:
            # The store first: a run that opened every descriptor it could holds the process's open-files
            # limit until its store is closed, and removing its directory needs descriptors.
            store.close()
            if scratch is not None:
                _remove(scratch)
        if run.stderr_partial:
            run.add_log("stderr", bytes(run.stderr_partial))
        if run.logs_dropped:
            run.add_log("warn", f"{run.logs_dropped} log lines dropped (more than {MAX_LOG_BYTES} bytes)".encode())
        finished = classify(run, error, peak, initialized)
        finished = Finished(
            outcome=finished.outcome,
            exit_code=finished.exit_code,
            trap=finished.trap,
            limit=finished.limit,
            reason=finished.reason,
            fuel_used=max(spec.limits.fuel - fuel_left, 0),
            peak_memory_bytes=peak,
            duration_seconds=duration,
            tool_calls=run.tool_calls,
            output_bytes=run.output_bytes,
        )
        run.emit(finished)
        run.flush()
        return finished

    @staticmethod
    def _memory_size(store: wasmtime.Store, instance: wasmtime.Instance | None) -> int:
        if instance is None:
            return 0
        memory = instance.exports(store).get("memory")
        return memory.data_len(store) if isinstance(memory, wasmtime.Memory) else 0


def _unused(*_args: object) -> int:  # a stand-in for the guard's functions, never called
    return 0


def _remove(directory: Path) -> None:
    """The run's private directory, however deep the guest made it (shutil.rmtree recurses)."""
    try:
        remove_tree(str(directory))
    except OSError:
        log.exception("could not remove a run's directory %s", directory)


def _call(exports: InstanceExports, store: wasmtime.Store, name: str) -> None:
    func = exports[name]
    assert isinstance(func, wasmtime.Func)  # link() checked the export's type
    func(store)
