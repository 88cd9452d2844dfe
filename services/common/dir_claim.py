"""One process per data directory: an exclusive `flock` on `<dir>/.lock`, held for the process's life.

The embedded stores assume their directory is theirs alone: the scheduler's SQLite journal re-queues the
agents it finds RUNNING at start-up (a second scheduler on the same file would run the first one's agents
again), the executor empties its run root at start-up (a second executor would delete the directories of
the first one's live runs), and the signer's key versions would fork. Two processes pointed at one
directory by mistake (one AF_DATA_DIR in two supervisor programs, a volume mounted into two pods) must
fail at start, with the holder's pid, rather than corrupt each other quietly.

The kernel drops a flock when its holder dies, however it dies (kill -9, OOM): no stale lock to clean up.
The descriptor is not inherited by child processes (os.open's default since PEP 446), so a compile
worker never holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = ".lock"


class DirInUse(Exception):
    """Another live process holds the directory."""

    def __init__(self, directory: Path, holder_pid: int | None) -> None:
        holder = f"process {holder_pid}" if holder_pid else "another process"
        super().__init__(f"{holder} is using {directory}")
        self.directory = directory
        self.holder_pid = holder_pid


@dataclass
class DirClaim:
    """A held claim; `release()` (or the process's exit) gives the directory up."""

    directory: Path
    _fd: int | None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the open file releases the flock
            self._fd = None


def claim(directory: Path) -> DirClaim:
    """Claim `directory` (made if missing) for this process; DirInUse when a live process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        raise DirInUse(directory, holder) from None
    # The holder's pid, for the message a second process prints. Only a hint: the lock is the flock, held
    # now, so a pid that cannot be written (a full disk, a file size limit) fails nothing. Failing here
    # made a registry on a full disk exit instead of staying up NOT_SERVING and saying why, and leaked
    # the descriptor (the flock stayed held by a claim that had raised).
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DirClaim(directory, fd)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None
