"""Per-run state: what a run needs (RunSpec), what it has done so far (RunState), and which run the
current thread is executing (host functions and the epoch callback find their run through it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.executor.events import LimitKind, Log, Output, RunEvent, Started
from services.templates.manifest import Limits

if TYPE_CHECKING:
    from services.executor.sandbox.scratch import ScratchBudget
    from services.executor.sandbox.tools import AgentTools
    from services.executor.sandbox.wasi_files import RunFiles

OUTPUT_CHUNK_BYTES = 32 * 1024  # one OutputChunk event at most; well under gRPC's 4 MiB message cap
MAX_LOG_BYTES = 64 * 1024  # per run: stderr plus the log tool; further lines are dropped and counted
MAX_LOG_LINE = 4096
FLUSH_INTERVAL_S = 0.02  # events reach the stream at least this often while a run is busy
FLUSH_BYTES = 64 * 1024


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
    tool_host: AgentTools | None = None
    # Template files: (host directory, guest directory) pairs preopened read-only (services/executor/files.py).
    mounts: tuple[tuple[str, str], ...] = ()


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
    tick: float = 0.01  # the engine's epoch tick in seconds: how long a host call may wait between checks
    scratch: ScratchBudget | None = None  # the cap on its file system, when `scratch` is granted
    files: RunFiles | None = None  # its descriptors and WASI forwarding, when it has a preopen (wasi_files.py)

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
    def output_room(self) -> int:
        return max(self.spec.limits.max_output_bytes - self.output_bytes, 0)

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

    def add_log(self, level: str, raw: bytes | bytearray) -> None:
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
        """Thread-safe: the epoch callback and waiting host calls see it within one tick."""
        self.cancelled = True

    def must_stop(self) -> bool:
        """True when the run was cancelled or its deadline passed (the latter recorded); for host calls."""
        if self.cancelled:
            return True
        if time.monotonic() >= self.deadline:
            self.deadline_hit = True
            return True
        return False


# The run this thread is executing (`CURRENT.run`), read by host functions and the epoch callback. An
# attribute of a thread-local rather than a function: stdio host functions read it on every run's path.
CURRENT = threading.local()


def bind(run: RunState | None) -> None:
    """Make `run` the current thread's run (None to unbind): Stores are used on one thread only."""
    CURRENT.run = run


def current() -> RunState:
    """The run this thread is executing; only called from host functions and the epoch callback."""
    run: RunState = CURRENT.run
    return run


def current_or_none() -> RunState | None:
    run: RunState | None = getattr(CURRENT, "run", None)
    return run
