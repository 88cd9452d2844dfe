"""The on-disk level of the compiled-module cache, bounded by bytes and pruned least recently used first.

Artifacts are `<digest>[+variant]-<engine fingerprint>.cwasm` files (see modules.py for their format). The index of
what is on disk (name -> size, in recency order) is built once from a directory listing (stat only, no
reads) and kept in memory; a hit moves its file to the recent end and touches its mtime so the order
survives a restart. Artifacts of another engine fingerprint (an upgraded wasmtime) are never read again:
they are the oldest entries at start-up, so pruning removes them first. Leftover temporary files of a
crash are deleted at start-up.
"""

from __future__ import annotations

import builtins  # DiskModuleStore has a method named bytes: later annotations name the builtin explicitly
import contextlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

from services.common.cache import CACHE_EVICTIONS
from services.common.sized_cache import CACHE_BUDGET, CACHE_BYTES

log = logging.getLogger(__name__)

CACHE_NAME = "executor_modules_disk"


class DiskModuleStore:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict()
        self._bytes = 0
        self._gauge = CACHE_BYTES.labels(CACHE_NAME)
        self._evicted = CACHE_EVICTIONS.labels(CACHE_NAME, "capacity")
        CACHE_BUDGET.labels(CACHE_NAME).set(max_bytes)
        self._scan()

    @property
    def bytes(self) -> int:
        return self._bytes

    def _scan(self) -> None:
        found: list[tuple[float, str, int]] = []
        with os.scandir(self.dir) as entries:
            for entry in entries:
                try:
                    if ".tmp" in entry.name:  # a write interrupted by a crash
                        os.unlink(entry.path)
                    elif entry.name.endswith(".cwasm"):
                        stat = entry.stat()
                        found.append((stat.st_mtime, entry.name, stat.st_size))
                except OSError:
                    continue
        for _, name, size in sorted(found):
            self._index[name] = size
            self._bytes += size
        with self._lock:
            self._prune()

    def read(self, name: str) -> builtins.bytes | None:
        """The artifact's bytes, or None. Blocking."""
        try:
            raw = (self.dir / name).read_bytes()
        except FileNotFoundError:
            self._forget(name)
            return None
        with self._lock:
            if name in self._index:
                self._index.move_to_end(name)
        with contextlib.suppress(OSError):
            os.utime(self.dir / name)  # recency for the next start-up's order
        return raw

    def write(self, name: str, data: builtins.bytes) -> None:
        """Store atomically, then prune the least recently used artifacts past the budget. Raises OSError.
        An artifact larger than the whole budget is not stored."""
        if len(data) > self.max_bytes:
            return
        path = self.dir / name
        tmp = path.with_name(f"{name}.tmp{threading.get_ident()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        with self._lock:
            self._bytes -= self._index.pop(name, 0)
            self._index[name] = len(data)
            self._bytes += len(data)
            self._prune(keep=name)

    def size(self, name: str) -> int:
        """The artifact's size in bytes, 0 if it is not on disk."""
        with self._lock:
            return self._index.get(name, 0)

    def delete(self, name: str) -> None:
        (self.dir / name).unlink(missing_ok=True)
        self._forget(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._bytes -= self._index.pop(name, 0)
            self._gauge.set(self._bytes)

    def _prune(self, keep: str | None = None) -> None:
        """Called with the lock held."""
        while self._bytes > self.max_bytes and self._index:
            name, size = next(iter(self._index.items()))
            if name == keep:
                break
            del self._index[name]
            self._bytes -= size
            self._evicted.inc()
            try:
                (self.dir / name).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not prune compiled module %s: %s", name, exc)
        self._gauge.set(self._bytes)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._index

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)
