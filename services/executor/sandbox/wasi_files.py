"""What a run with a preopen (`scratch`, template files, or both) keeps about its WASI descriptors.

wasmtime's WASI has no per-context limit on open descriptors, and each one a run opens is a descriptor of
the executor's process, which every other run, the gRPC server and the SQLite stores share: one run could
take them all (and its own last open was then told EIO, wasmtime's answer to the host's EMFILE). So each
such run holds at most `limit` descriptors at once (MAX_DESCRIPTORS by default), counting stdin, stdout,
stderr and its preopened directories as RLIMIT_NOFILE counts a process's; past it `path_open` answers
EMFILE, the "too many open files" a program expects, and a closed descriptor makes room again. Of
preview 1's calls only `path_open` makes a descriptor: `fd_renumber` needs both numbers open and closes
its target (one fewer), and `sock_accept` has nothing to accept on (no run is given a socket: ENOTSOCK).

The table also says which descriptors are still stdin, stdout or stderr once `fd_renumber` and `fd_close`
moved them: writes to stdout and stderr go to the executor's own stdio function wherever they now are,
and a file that took descriptor 1 or 2 is written as a file (fs_calls.py).
Only the run's own thread touches any of this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.executor.sandbox.fs_calls import FastRun, Forward, Guard
    from services.executor.sandbox.scratch import ScratchBudget

# Per run: far above what programs keep open, and times the runs one executor holds at once (its worker
# pool, AF_EXECUTOR_MAX_WORKERS, 2 per core by default) far below a process's usual open-files limit.
MAX_DESCRIPTORS = 256
STDIN, STDOUT, STDERR = 0, 1, 2


@dataclass
class Descriptors:
    """The run's open descriptors as its WASI context numbers them, and where stdio is among them."""

    open: set[int]
    stdio: dict[int, int]  # descriptor -> the stream (STDIN, STDOUT, STDERR) it still is
    limit: int = MAX_DESCRIPTORS
    refusals: int = 0

    @classmethod
    def at_start(cls, preopens: int, limit: int = MAX_DESCRIPTORS) -> Descriptors:
        """stdin, stdout, stderr, then the preopens from 3 on, as wasmtime's WASI numbers them."""
        return cls(set(range(3 + preopens)), {STDIN: STDIN, STDOUT: STDOUT, STDERR: STDERR}, limit)

    def admit(self) -> bool:
        """May the run open one more? False (and counted) at the limit."""
        if len(self.open) < self.limit:
            return True
        self.refusals += 1
        return False

    def opened(self, fd: int) -> None:
        self.open.add(fd)
        self.stdio.pop(fd, None)

    def closed(self, fd: int) -> None:
        self.open.discard(fd)
        self.stdio.pop(fd, None)

    def renumbered(self, source: int, target: int) -> None:
        """After a successful fd_renumber: `target`'s old descriptor is closed and `source`'s moved there."""
        if source == target:
            return
        self.open.discard(source)
        self.open.add(target)
        stream = self.stdio.pop(source, None)
        self.stdio.pop(target, None)
        if stream is not None:
            self.stdio[target] = stream


@dataclass
class RunFiles:
    """One run's WASI file state: its descriptors, its scratch budget (when granted `scratch`), and the
    guard that forwards calls to wasmtime's WASI (fs_calls.py; its instance made at the first forward)."""

    descriptors: Descriptors
    guard: Guard
    budget: ScratchBudget | None = None
    forward: Forward | None = field(default=None)
    fast: FastRun | None = None  # its wasm guard, when its module's writes are routed (scratch_rewrite.py)
