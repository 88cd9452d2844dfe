"""The wasmtime sandbox: one Engine per process, one Store per run, one budget per run.

Budget and how each part is enforced:
- fuel: `Store.set_fuel(limits.fuel)`; running out traps with OUT_OF_FUEL.
- memory: store limits (`memory_size`, tables, table elements, instances, memories). A too-large initial
  memory fails instantiation; a refused `memory.grow` returns -1 to the guest (wasmtime's C API cannot
  make it trap), so a run that then fails with its memory within one growth step of the limit is
  reported as the memory limit (see `_memory_pressed`).
- wall clock and cancellation: epoch interruption. The engine's epoch is advanced by one ticker thread
  every `epoch_tick_ms`. Each store registers an *epoch deadline callback* (wasmtime's C API
  `wasmtime_store_epoch_deadline_callback`, which wasmtime-py 50 binds but does not wrap) and re-arms
  a one-tick deadline. The callback runs on the guest's own thread at the next epoch check after a
  tick, looks at the run's wall-clock deadline and its cancel flag (a plain attribute written by any
  thread, read under the GIL) and either continues for one more tick or ends the run. So a run stops
  within one tick of its deadline or of a cancel, also inside instantiation (the wasm start function),
  and no thread ever touches another thread's Store (Stores are not thread-safe).
- stack: `Config.max_wasm_stack`; overflow traps with STACK_OVERFLOW.
- output bytes and tool calls: counted in host functions. When one trips, the host function zeroes the
  store's fuel through its own Caller context, so the guest traps at its next instruction batch;
  the trip is recorded first, so the run is classified by the limit and not as "out of fuel".

Host functions never raise: wasmtime-py keeps the exception a host function raised in a process-global
(`_func.LAST_EXCEPTION`) that a concurrent run on another thread could pick up, so every host function
catches everything, records it on its own run and returns an error code or zeroes the fuel.
stdin/stdout/stderr are host functions shadowing WASI's `fd_read`/`fd_write` (about 3x cheaper per run
than WASI files or callbacks, and they let the output cap stop the guest at once), except when the
`scratch` tool is granted: then WASI owns file descriptors >= 3 and stdio goes through WASI
(stdin from a file, stdout/stderr through callbacks; the output cap then stops the guest at the next tick).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime
from wasmtime import _ffi as ffi  # the epoch deadline callback is only reachable through the raw bindings

from services.common.errors import FailedPrecondition
from services.executor import guest, metrics
from services.executor.events import Finished, LimitKind, Log, Outcome, Output, RunEvent, Started, ToolCalled
from services.spec.manifest import Limits

log = logging.getLogger(__name__)

WASI_MODULE = "wasi_snapshot_preview1"
TOOL_MODULE = "agentfactory"
WASMTIME_VERSION = importlib.metadata.version("wasmtime")

OUTPUT_CHUNK_BYTES = 32 * 1024  # one OutputChunk event at most; well under gRPC's 4 MiB message cap
MAX_LOG_BYTES = 64 * 1024  # per run: stderr plus the log tool; further lines are dropped and counted
MAX_LOG_LINE = 4096
FLUSH_INTERVAL_S = 0.02  # events reach the stream at least this often while a run is busy
FLUSH_BYTES = 64 * 1024
MAX_TABLE_ELEMENTS = 100_000
MAX_TABLES = 4
MAX_INSTANCES = 4
MAX_MEMORIES = 1

# WASI errno values (wasi_snapshot_preview1)
ERRNO_SUCCESS, ERRNO_BADF, ERRNO_FAULT, ERRNO_FBIG, ERRNO_IO = 0, 8, 21, 22, 29

I32 = wasmtime.ValType.i32()
I64 = wasmtime.ValType.i64()


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
            f"growth={self.memory_reservation_for_growth};opt={self.opt_level}"
        )
        return hashlib.sha256(described.encode()).hexdigest()[:16]


# --- per-run state ---------------------------------------------------------------------------------


@dataclass
class RunSpec:
    """What one run needs. `tool_host` serves the agentfactory imports (None when no tool is granted)."""

    limits: Limits
    input: bytes
    argv: list[str]
    env: dict[str, str]
    tools: frozenset[str]
    started: Started
    sink: Callable[[list[RunEvent]], None]
    tool_host: ToolHost | None = None


class ToolHost:
    """Implements the agentfactory tool functions for one run (see tools.py)."""

    def call(self, run: RunState, caller: wasmtime.Caller, name: str, args: tuple[int, ...]) -> tuple[int, bool, str]:
        raise NotImplementedError


@dataclass
class RunState:
    """Mutable state of one run. Only the run's own thread touches it, except `cancel()`."""

    spec: RunSpec
    deadline: float
    cancelled: bool = False
    deadline_hit: bool = False
    tripped: tuple[LimitKind, str] | None = None
    internal_error: str = ""
    fuel_at_trip: int | None = None
    output_bytes: int = 0
    tool_calls: int = 0
    log_bytes: int = 0
    logs_dropped: int = 0
    input_pos: int = 0
    stderr_partial: bytearray = field(default_factory=bytearray)
    out_buf: bytearray = field(default_factory=bytearray)
    pending: list[RunEvent] = field(default_factory=list)
    pending_bytes: int = 0
    last_flush: float = 0.0

    # -- events --
    def _cut_output(self) -> None:
        if self.out_buf:
            self.pending.append(Output(bytes(self.out_buf)))
            self.out_buf.clear()

    def emit(self, event: RunEvent) -> None:
        self._cut_output()
        self.pending.append(event)
        self.maybe_flush()

    def flush(self) -> None:
        self._cut_output()
        if self.pending:
            batch, self.pending, self.pending_bytes = self.pending, [], 0
            self.spec.sink(batch)
        self.last_flush = time.monotonic()

    def maybe_flush(self) -> None:
        if self.pending_bytes >= FLUSH_BYTES or (
            (self.pending or self.out_buf) and time.monotonic() - self.last_flush >= FLUSH_INTERVAL_S
        ):
            self.flush()

    # -- stdio --
    def take_output(self, data: bytes) -> bool:
        """Accept stdout bytes up to the cap; False (and the limit recorded) when the cap is passed."""
        room = self.spec.limits.max_output_bytes - self.output_bytes
        accepted = data[: max(room, 0)]
        while accepted:
            space = OUTPUT_CHUNK_BYTES - len(self.out_buf)
            self.out_buf += accepted[:space]
            accepted = accepted[space:]
            if len(self.out_buf) >= OUTPUT_CHUNK_BYTES:
                self._cut_output()
        taken = min(len(data), max(room, 0))
        self.output_bytes += taken
        self.pending_bytes += taken
        if taken < len(data):
            self.trip(
                LimitKind.OUTPUT, f"the agent wrote more than max_output_bytes={self.spec.limits.max_output_bytes}"
            )
            return False
        self.maybe_flush()
        return True

    def take_stderr(self, data: bytes) -> None:
        self.stderr_partial += data
        *lines, rest = self.stderr_partial.split(b"\n")
        self.stderr_partial = bytearray(rest[-MAX_LOG_LINE:])
        for line in lines:
            self.add_log("stderr", line)

    def add_log(self, level: str, raw: bytes) -> None:
        if self.log_bytes + len(raw) > MAX_LOG_BYTES:
            self.logs_dropped += 1
            return
        self.log_bytes += len(raw)
        self.pending_bytes += len(raw)
        self.emit(Log(level, raw[:MAX_LOG_LINE].decode("utf-8", "replace")))

    def read_input(self, n: int) -> bytes:
        data = self.spec.input[self.input_pos : self.input_pos + n]
        self.input_pos += len(data)
        return data

    # -- limits --
    def trip(self, limit: LimitKind, reason: str) -> None:
        if self.tripped is None:
            self.tripped = (limit, reason)

    def cancel(self) -> None:
        """Thread-safe: the epoch callback on the run's thread sees it within one tick."""
        self.cancelled = True


_current = threading.local()


def stop_now(caller: wasmtime.Caller, run: RunState) -> None:
    """End the guest at its next fuel check (called only on the run's own thread, via its Caller)."""
    context = caller._context()
    fuel = ctypes.c_uint64()
    if not ffi.wasmtime_context_get_fuel(context, ctypes.byref(fuel)):
        run.fuel_at_trip = fuel.value
    ffi.wasmtime_context_set_fuel(context, 0)


_EpochCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
)
_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))
_UPDATE_CONTINUE = 0


def _interrupt(message: bytes) -> int:
    error = ffi.wasmtime_error_new(message)
    return ctypes.cast(error, ctypes.c_void_p).value or 0


@_EpochCallback
def _on_epoch(_context, _data, delta, kind):  # type: ignore[no-untyped-def]
    """Runs on the guest's thread after each tick. Returning an error ends the run."""
    try:
        run: RunState | None = getattr(_current, "run", None)
        if run is None:
            return _interrupt(b"agentfactory: no run is bound to this thread")
        if run.cancelled:
            return _interrupt(b"agentfactory: run cancelled")
        if time.monotonic() >= run.deadline:
            run.deadline_hit = True
            return _interrupt(b"agentfactory: wall-clock deadline passed")
        if run.tripped is not None:
            return _interrupt(b"agentfactory: limit tripped")
        run.maybe_flush()
        delta[0] = 1
        kind[0] = _UPDATE_CONTINUE
        return 0
    except BaseException:  # a ctypes callback must not raise; stopping the run is the safe answer
        return _interrupt(b"agentfactory: internal error in the epoch callback")


# --- stdio host functions (shadow WASI) ------------------------------------------------------------


def _fd_write(caller: wasmtime.Caller, fd: int, iovs: int, iovs_len: int, nwritten: int) -> int:
    run: RunState = _current.run
    try:
        if fd not in (1, 2):
            return ERRNO_BADF
        vecs = guest.read_u32_pairs(caller, iovs, iovs_len)
        if vecs is None:
            return ERRNO_FAULT
        total = 0
        for ptr, length in vecs:
            data = guest.read(caller, ptr, length)
            if data is None:
                return ERRNO_FAULT
            if fd == 1:
                if not run.take_output(data):
                    stop_now(caller, run)
                    return ERRNO_FBIG
            else:
                run.take_stderr(data)
            total += length
        return ERRNO_SUCCESS if guest.write_u32(caller, nwritten, total) else ERRNO_FAULT
    except BaseException as exc:
        return _host_failure(caller, run, "fd_write", exc)


def _fd_read(caller: wasmtime.Caller, fd: int, iovs: int, iovs_len: int, nread: int) -> int:
    run: RunState = _current.run
    try:
        if fd != 0:
            return ERRNO_BADF
        vecs = guest.read_u32_pairs(caller, iovs, iovs_len)
        if vecs is None:
            return ERRNO_FAULT
        total = 0
        for ptr, length in vecs:
            data = run.read_input(length)
            if not guest.write(caller, ptr, length, data):
                return ERRNO_FAULT
            total += len(data)
            if len(data) < length:
                break
        return ERRNO_SUCCESS if guest.write_u32(caller, nread, total) else ERRNO_FAULT
    except BaseException as exc:
        return _host_failure(caller, run, "fd_read", exc)


def _host_failure(caller: wasmtime.Caller, run: RunState, where: str, exc: BaseException) -> int:
    """A bug in the host, not the guest's fault: stop the run and say so instead of raising."""
    log.error("host function %s failed", where, exc_info=exc)
    run.internal_error = run.internal_error or f"host function {where} failed: {type(exc).__name__}"
    try:
        stop_now(caller, run)
    except BaseException:
        run.deadline = 0.0  # the epoch callback stops it at the next tick instead
    return ERRNO_IO


_FD_TYPE = wasmtime.FuncType([I32, I32, I32, I32], [I32])


# --- the engine ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolImport:
    tool: str
    params: tuple[wasmtime.ValType, ...]
    results: tuple[wasmtime.ValType, ...]


# import name in module "agentfactory" -> the manifest tool that grants it (docs/tools-abi.md)
TOOL_IMPORTS: dict[str, ToolImport] = {
    "log": ToolImport("log", (I32, I32, I32), (I32,)),
    "kv_get": ToolImport("kv", (I32, I32, I32, I32), (I32,)),
    "kv_put": ToolImport("kv", (I32, I32, I32, I32), (I32,)),
    "clock_now_ms": ToolImport("clock", (), (I64,)),
    "random_fill": ToolImport("random", (I32, I32), (I32,)),
    "http_get": ToolImport("http_get", (I32, I32, I32, I32), (I32,)),
}


_RESULTS = {-1: "not_found", -2: "denied", -3: "bounds", -4: "too_large", -5: "io", -6: "invalid"}


def _tool_func(name: str) -> Callable[..., int]:
    def call(caller: wasmtime.Caller, *args: int) -> int:
        run: RunState = _current.run
        try:
            run.tool_calls += 1
            if run.tool_calls > run.spec.limits.max_tool_calls:
                run.trip(
                    LimitKind.TOOL_CALLS,
                    f"the agent made more than max_tool_calls={run.spec.limits.max_tool_calls} tool calls",
                )
                stop_now(caller, run)
                return -2
            host = run.spec.tool_host
            if host is None:
                return -2
            result, allowed, detail = host.call(run, caller, name, args)
            tool = TOOL_IMPORTS[name].tool
            run.emit(ToolCalled(tool, allowed, detail))
            metrics.TOOL_CALLS.labels(tool, _RESULTS.get(result, "ok") if result < 0 else "ok").inc()
            return result
        except BaseException as exc:
            return _host_failure(caller, run, name, exc)

    return call


# WASI calls that can make the calling thread wait (poll_oneoff sleeps on a clock subscription).
BLOCKING_WASI_IMPORTS = frozenset({"poll_oneoff"})


@dataclass
class Prepared:
    """A compiled module linked for one tool set: what a run instantiates."""

    module: wasmtime.Module
    pre: wasmtime.InstancePre
    # True when a run can only compute and use in-memory stdio: no granted tool, no WASI call that can
    # wait. Such a run may go on the event loop's thread under a small fuel budget (see service.py).
    pure: bool = False


class Sandbox:
    """The process's one Engine, its epoch ticker and a Linker per granted tool set."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.engine = wasmtime.Engine(settings.config())
        self.fingerprint = settings.fingerprint()
        self._linkers: dict[frozenset[str], wasmtime.Linker] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="epoch-ticker", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        interval = self.settings.epoch_tick_ms / 1000
        while not self._stop.wait(interval):
            self.engine.increment_epoch()

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=1)

    # -- compile and link --
    def compile(self, wasm: bytes) -> wasmtime.Module:
        try:
            return wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise FailedPrecondition(f"module does not compile: {str(exc).splitlines()[0]}") from exc

    def deserialize(self, serialized: bytes) -> wasmtime.Module:
        return wasmtime.Module.deserialize(self.engine, serialized)

    def linker(self, tools: frozenset[str]) -> wasmtime.Linker:
        with self._lock:
            linker = self._linkers.get(tools)
            if linker is None:
                linker = wasmtime.Linker(self.engine)
                linker.define_wasi()
                linker.allow_shadowing = True
                if "scratch" not in tools:
                    linker.define_func(WASI_MODULE, "fd_write", _FD_TYPE, _fd_write, access_caller=True)
                    linker.define_func(WASI_MODULE, "fd_read", _FD_TYPE, _fd_read, access_caller=True)
                for name, spec in TOOL_IMPORTS.items():
                    if spec.tool in tools:
                        ty = wasmtime.FuncType(list(spec.params), list(spec.results))
                        linker.define_func(TOOL_MODULE, name, ty, _tool_func(name), access_caller=True)
                self._linkers[tools] = linker
            return linker

    def link(self, module: wasmtime.Module, tools: frozenset[str], ref: str) -> Prepared:
        """Refuse (FailedPrecondition naming the import) anything the signed manifest does not grant."""
        for imp in module.imports:
            where = f"{imp.module}.{imp.name}"
            if imp.module == TOOL_MODULE:
                spec = TOOL_IMPORTS.get(imp.name or "")
                if spec is None:
                    raise FailedPrecondition(
                        f"{ref}: module imports {where}, which is not an agentfactory tool function "
                        f"(known: {', '.join(sorted(TOOL_IMPORTS))})"
                    )
                if spec.tool not in tools:
                    raise FailedPrecondition(
                        f"{ref}: module imports {where} (tool {spec.tool!r}), which the signed manifest does not "
                        f"grant (tools: {', '.join(sorted(tools)) or 'none'})"
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
            pre = self.linker(tools).instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise FailedPrecondition(f"{ref}: module cannot be linked: {' '.join(str(exc).split())}") from exc
        pure = not tools and not any(
            imp.module == WASI_MODULE and imp.name in BLOCKING_WASI_IMPORTS for imp in module.imports
        )
        return Prepared(module, pre, pure)

    # -- run --
    def run(self, prepared: Prepared, run: RunState) -> Finished:
        """Run once on the calling thread; emits events through spec.sink and returns the last one
        (also emitted). Never raises for anything the guest does. `run` may be cancelled from any thread."""
        spec = run.spec
        started_at = time.monotonic()
        run.deadline = started_at + spec.limits.timeout_ms / 1000
        run.last_flush = started_at
        store = wasmtime.Store(self.engine)
        scratch: Path | None = None
        instance: wasmtime.Instance | None = None
        error: BaseException | None = None
        _current.run = run
        try:
            store.set_fuel(spec.limits.fuel)
            store.set_limits(
                memory_size=spec.limits.memory_bytes,
                table_elements=MAX_TABLE_ELEMENTS,
                instances=MAX_INSTANCES,
                tables=MAX_TABLES,
                memories=MAX_MEMORIES,
            )
            ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), _on_epoch, None, _NO_FINALIZER)
            store.set_epoch_deadline(1)
            scratch = self._wasi(store, spec, run)
            instance = prepared.pre.instantiate(store)
            run.emit(spec.started)
            start = instance.exports(store)["_start"]
            assert isinstance(start, wasmtime.Func)
            start(store)
        except BaseException as exc:  # classified below; the guest cannot crash the host
            error = exc
        finally:
            _current.run = None
        duration = time.monotonic() - started_at
        try:
            peak = self._memory_size(store, instance)
            fuel_left = run.fuel_at_trip if run.fuel_at_trip is not None else store.get_fuel()
        except BaseException:
            peak, fuel_left = 0, spec.limits.fuel
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        if run.stderr_partial:
            run.add_log("stderr", bytes(run.stderr_partial))
        if run.logs_dropped:
            run.add_log("warn", f"{run.logs_dropped} log lines dropped (more than {MAX_LOG_BYTES} bytes)".encode())
        finished = self._classify(run, error, peak, instance is not None)
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
        store.close()
        return finished

    def _wasi(self, store: wasmtime.Store, spec: RunSpec, run: RunState) -> Path | None:
        wasi = wasmtime.WasiConfig()
        wasi.argv = spec.argv
        wasi.env = list(spec.env.items())
        scratch: Path | None = None
        if "scratch" in spec.tools:
            # A private directory per run: /scratch for the guest, plus the stdin file beside it.
            scratch = Path(tempfile.mkdtemp(prefix="af-run-"))
            (scratch / "fs").mkdir()
            (scratch / "stdin").write_bytes(spec.input)
            wasi.preopen_dir(str(scratch / "fs"), "/scratch")
            wasi.stdin_file = str(scratch / "stdin")

            def stdout(data: bytes) -> int:
                return len(data) if run.take_output(data) else -ERRNO_FBIG

            def stderr(data: bytes) -> int:
                run.take_stderr(data)
                return len(data)

            wasi.stdout_custom = stdout
            wasi.stderr_custom = stderr
        store.set_wasi(wasi)
        return scratch

    @staticmethod
    def _memory_size(store: wasmtime.Store, instance: wasmtime.Instance | None) -> int:
        if instance is None:
            return 0
        memory = instance.exports(store).get("memory")
        return memory.data_len(store) if isinstance(memory, wasmtime.Memory) else 0

    @staticmethod
    def _classify(run: RunState, error: BaseException | None, peak: int, instantiated: bool) -> Finished:
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
        if error is None:
            return Finished(Outcome.SUCCEEDED, exit_code=0)
        if isinstance(error, wasmtime.ExitTrap):
            if error.code == 0:
                return Finished(Outcome.SUCCEEDED, exit_code=0)
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
