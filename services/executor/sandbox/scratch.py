"""The byte and entry cap of a run's own file system (the `scratch` grant), and its removal.

wasmtime's WASI writes the run's files itself, so the cap is kept where the guest asks for disk: the
WASI calls that can add bytes or directory entries are ours (fs_calls.py), and each first charges this
budget an upper bound of what it can add — the bytes written plus two blocks (a partial block at each
end of the range: a one-byte write far past the end of a file still allocates a whole block), one block
and one entry for a file, directory or symlink created, one block for a rename or link (the directory
it lands in may grow). Charges only ever over-count (an overwrite or a deleted file is still charged),
so when a charge does not fit, the budget is set to what the directory really holds (blocks allocated,
entries, and the blocks of files deleted while still open) and the call is refused only if it still
does not fit. So the run never holds more than the
cap on disk, sparse files count what they allocate (not their length), and a refused call is the
ENOSPC a full disk gives.

A run whose writes are checked in wasm (scratch_rewrite.py, fs_calls.FastGuard) prepays: `prepay` charges
a chunk up front (what still fits, never more) and the guard spends it write by write without asking the
host. `used_bytes` then counts the unspent allowance too, so before a charge that does not fit measures
the disk, `take_prepaid` takes the allowance back: prepaid bytes never cause a refusal the charges alone
would not, and the charges plus the allowance never pass the cap.

Measuring and removing walk the tree with one directory descriptor at a time (down by name, up by
`..`; the guest is stopped in the host call, so nothing moves meanwhile): a tree as deep as the entry
cap allows needs neither one descriptor per level nor Python recursion (shutil.rmtree recurses, and
raises RecursionError on a tree about a thousand levels deep).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

BLOCK = 4096
MAX_BYTES = 16 * 1024 * 1024  # per run, everything under its `/` (which holds `/scratch`)
MAX_ENTRIES = 1024  # files, directories and symlinks under its `/`, `/scratch` included

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class ScratchBudget:
    """What a run's file system may still take; only the run's own thread touches it."""

    root: str
    max_bytes: int = MAX_BYTES
    max_entries: int = MAX_ENTRIES
    used_bytes: int = 2 * BLOCK  # an upper bound: `/` and the empty `scratch` in it, then every charge
    used_entries: int = 1
    refusals: int = 0
    # The unspent prepaid allowance, now taken back (zero from then on): set by a run with a wasm guard.
    take_prepaid: Callable[[], int] | None = None

    def admit(self, nbytes: int, entries: int) -> bool:
        """Charge a call's upper bound; False (nothing charged) when even the measured usage leaves no room."""
        if not self._fits(nbytes, entries) and self.take_prepaid is not None:
            self.used_bytes -= self.take_prepaid()
        if not self._fits(nbytes, entries):
            self.used_bytes, self.used_entries = usage(self.root)
            self.used_bytes += unlinked_open_bytes(self.root)
            if not self._fits(nbytes, entries):
                self.refusals += 1
                return False
        self.used_bytes += nbytes
        self.used_entries += entries
        return True

    def prepay(self, most: int) -> int:
        """Charge up to `most` bytes that fit as they stand (no measuring) and return how many."""
        nbytes = max(min(most, self.max_bytes - self.used_bytes), 0)
        self.used_bytes += nbytes
        return nbytes

    def _fits(self, nbytes: int, entries: int) -> bool:
        return self.used_bytes + nbytes <= self.max_bytes and self.used_entries + entries <= self.max_entries

    def describe(self) -> str:
        return f"{self.max_bytes} bytes and {self.max_entries} files, directories and symlinks"


def _walk(root: str, remove: bool = False) -> tuple[int, int]:
    """(bytes allocated by `root` and everything below it, entries below it); with `remove`, everything
    below it is deleted too."""
    entries = 0
    fd = os.open(root, _DIR_FLAGS)
    total_bytes = os.fstat(fd).st_blocks * 512  # a directory of many entries outgrows its first block
    # One frame per directory on the way down: the names of its subdirectories still to visit.
    pending: list[list[str]] = []
    try:
        names = _scan(fd)
        while True:
            subdirs: list[str] = []
            for name in names:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                total_bytes += info.st_blocks * 512
                entries += 1
                if stat.S_ISDIR(info.st_mode):
                    subdirs.append(name)
                elif remove:
                    os.unlink(name, dir_fd=fd)
            pending.append(subdirs)
            while pending and not pending[-1]:
                pending.pop()
                if not pending:
                    return total_bytes, entries
                parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = parent
                if remove:
                    os.rmdir(pending[-1].pop(), dir_fd=fd)
                else:
                    pending[-1].pop()
            child = os.open(pending[-1][-1], _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            names = _scan(fd)
    finally:
        os.close(fd)


def _scan(fd: int) -> list[str]:
    with os.scandir(fd) as found:
        return [entry.name for entry in found]


def unlinked_open_bytes(root: str) -> int:
    """Blocks still held by files below `root` that were deleted (or renamed over) while a descriptor
    keeps them open: a walk cannot see them, and without them a run could unlink what it wrote, keep it
    open and write as much again. Found through /proc/self/fd (the process's descriptors, wasmtime's for
    this run among them); on a system without /proc they are not counted."""
    prefix = root.rstrip("/") + "/"
    total = 0
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return 0
    for fd in descriptors:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(prefix) and target.endswith(" (deleted)"):
                total += os.stat(f"/proc/self/fd/{fd}").st_blocks * 512
        except OSError:  # closed meanwhile (another thread's descriptor)
            continue
    return total


def usage(root: str) -> tuple[int, int]:
    """Bytes allocated (st_blocks, so a sparse file counts what it holds) by `root` and below, and the
    entries below it."""
    return _walk(root)


def remove_tree(path: str) -> None:
    """Delete `path` and everything below it, however deep; a path already gone is fine."""
    try:
        _walk(path, remove=True)
        os.rmdir(path)
    except FileNotFoundError:
        pass
