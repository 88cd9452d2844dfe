"""Read-only template files on the executor: fetched from the registry by digest, checked against the
signed manifest's digest before anything is mounted, laid out as one directory tree per file set, and
kept on disk under a byte bound (least recently used first, never a tree a run is using).

A tree is `<root>/trees/<key>/<i>/<relative path>`, one numbered directory per mount (the policy's
allowed directory the files lie in), preopened read-only at that directory's guest path. `key` is the
SHA-256 of the file set's canonical JSON, so two templates shipping the same files share one tree.
Building happens once per tree in a temporary directory renamed into place. A run of a template whose
tree is cached pays a constant, small amount (`acquire_cached`): the key of its file set is remembered
per manifest (hashed once, not per run), one dictionary lookup and a use count under a lock; nothing is
copied, linked, hashed or verified per run, and eviction is only looked at when the cache is over its
bound. The sandbox then preopens the tree's directories as they are (one per allowed directory). An
evicted tree leaves its path under the lock (renamed aside) and is deleted outside it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.common.errors import FailedPrecondition
from services.common.logs import log_event
from services.templates.manifest import TemplateFile
from services.templates.policy import FileBounds

log = logging.getLogger(__name__)

MAX_REMEMBERED_KEYS = 4096  # file sets whose key is remembered (cleared past it, then hashed again once)

Fetch = Callable[[str, int], Awaitable[bytes]]
"""Fetches a blob's bytes by digest, at most the given size (the registry client's fetch_module)."""


@dataclass
class Tree:
    key: str
    path: Path
    size: int
    mounts: tuple[tuple[str, str], ...]  # (host directory, guest directory), read-only
    users: int = 0


@dataclass
class Mounts:
    """What one run mounts; `release()` once the run has ended (the tree may be evicted after that)."""

    dirs: tuple[tuple[str, str], ...]
    _release: Callable[[], None] = field(repr=False)

    def release(self) -> None:
        self._release()


def tree_key(files: Mapping[str, TemplateFile]) -> str:
    canonical = json.dumps({p: f.to_dict() for p, f in files.items()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class TemplateFiles:
    def __init__(self, root: Path, max_bytes: int, bounds: FileBounds, fetch: Fetch) -> None:
        self.root = root / "trees"
        self.max_bytes = max_bytes
        self.bounds = bounds
        self._fetch = fetch
        self._trees: OrderedDict[str, Tree] = OrderedDict()
        self._lock = threading.Lock()  # runs release from worker threads
        self._building: dict[str, asyncio.Future[Tree]] = {}
        self._bytes = 0  # the sizes of the trees in _trees
        # id(files mapping) -> (that mapping, its tree key): manifests are cached, so their `files` mappings
        # are the same objects run after run. The mapping is held, so its id cannot be reused meanwhile.
        self._keys: dict[int, tuple[Mapping[str, TemplateFile], str]] = {}
        # Trees left by an earlier process are not trusted (they were not checked by this one): start empty.
        # Their directories are read-only, which a plain rmtree cannot empty unless running as root.
        _remove(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def cached_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def _key(self, files: Mapping[str, TemplateFile]) -> str:
        found = self._keys.get(id(files))
        if found is not None and found[0] is files:
            return found[1]
        key = tree_key(files)
        if len(self._keys) >= MAX_REMEMBERED_KEYS:
            self._keys.clear()
        self._keys[id(files)] = (files, key)
        return key

    def acquire_cached(self, files: Mapping[str, TemplateFile]) -> Mounts | None:
        """The run's read-only mounts when the file set's tree is built (the per-run path), else None."""
        key = self._key(files)
        with self._lock:
            tree = self._trees.get(key)
            if tree is None:
                return None
            self._trees.move_to_end(key)
            tree.users += 1
        return self._mounts(tree)

    async def acquire(self, files: Mapping[str, TemplateFile]) -> Mounts:
        """The run's read-only mounts; FailedPrecondition if a blob is missing or fails its digest."""
        cached = self.acquire_cached(files)
        if cached is not None:
            return cached
        key = self._key(files)
        while True:
            with self._lock:
                tree = self._trees.get(key)
                if tree is not None:  # taken under the lock: no release elsewhere can drop it now
                    self._trees.move_to_end(key)
                    tree.users += 1
                    break
            pending = self._building.get(key)
            if pending is None:
                pending = asyncio.ensure_future(self._build(key, files))
                self._building[key] = pending
                pending.add_done_callback(lambda _f: self._building.pop(key, None))
            await asyncio.shield(pending)  # then take it above (built again if dropped in between)
        self._evict()  # after taking it: a tree just built is in use, never the one to drop
        return self._mounts(tree)

    def _mounts(self, tree: Tree) -> Mounts:
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    tree.users -= 1
                over = self._bytes > self.max_bytes
            if over:
                self._evict()

        return Mounts(tree.mounts, release)

    async def _build(self, key: str, files: Mapping[str, TemplateFile]) -> Tree:
        staging = self.root / f".{key}.{uuid.uuid4().hex[:8]}"
        final = self.root / key
        try:
            mount_index: dict[str, int] = {}
            for path, entry in files.items():
                mount = self.bounds.mount_dir(path)
                if mount is None:  # the executor's own policy (trust.py checks it first; kept for safety)
                    raise FailedPrecondition(f"file {path} is not under a directory this executor's policy mounts")
                index = mount_index.setdefault(mount, len(mount_index))
                data = await self._fetch(entry.sha256, entry.size)
                actual = hashlib.sha256(data).hexdigest()
                if actual != entry.sha256 or len(data) != entry.size:
                    raise FailedPrecondition(
                        f"file {path} fetched for {entry.sha256} hashes to {actual} ({len(data)} bytes); refusing to "
                        "mount it"
                    )
                target = staging / str(index) / path[len(mount) + 1 :]
                await asyncio.to_thread(_write_read_only, target, data)
            for index in mount_index.values():
                (staging / str(index)).chmod(0o555)
            await asyncio.to_thread(staging.rename, final)
        except BaseException:
            await asyncio.to_thread(_remove, staging)
            raise
        mounts = tuple((str(final / str(i)), mount) for mount, i in mount_index.items())
        tree = Tree(key, final, sum(f.size for f in files.values()), mounts)
        with self._lock:
            self._trees[key] = tree
            self._bytes += tree.size
        log_event(log, "template files mounted", tree=key, files=len(files), bytes=tree.size)
        return tree

    def _evict(self) -> None:
        """Drop least recently used trees no run holds until the cache fits its bound.

        A dropped tree is renamed aside (a unique trash name) under the lock and deleted outside it: once
        its key is gone from `_trees`, a run may build the same key again at once, and the new tree must
        be able to take the path (a rename onto a directory still being deleted fails) and must not be
        deleted by the removal of the old one."""
        doomed: list[Path] = []
        with self._lock:
            for key in list(self._trees):
                if self._bytes <= self.max_bytes:
                    break
                tree = self._trees[key]
                if tree.users == 0:
                    del self._trees[key]
                    self._bytes -= tree.size
                    trash = self.root / f".trash-{key[:16]}-{uuid.uuid4().hex[:8]}"
                    try:
                        tree.path.rename(trash)
                    except OSError as exc:  # left on disk, untracked; the next start-up empties the root
                        log_event(log, "could not evict template files", logging.WARNING, tree=key, error=str(exc))
                        continue
                    doomed.append(trash)
        for path in doomed:
            _remove(path)


def _write_read_only(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(0o444)


def _remove(path: Path) -> None:
    """Remove a tree whose directories were made read-only."""
    if not path.exists():
        return
    for directory in [path, *(p for p in path.rglob("*") if p.is_dir())]:
        directory.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)
