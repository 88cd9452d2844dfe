"""Compiled modules, three levels deep: an in-memory LRU, serialized artifacts on disk, the registry last.

Both cache levels are bounded by bytes (AF_EXECUTOR_MODULE_MEMORY_BYTES, AF_EXECUTOR_MODULE_DISK_BYTES) and
evict least recently used first. A compiled module's memory is counted as its serialized size (its native
code and metadata, what a loaded `wasmtime.Module` holds), and at least MIN_MODULE_COST. Runs (demand)
evict; background fill-ins (`evict=False`: start-up warm-up, precompilation on Watch) only take free room.

Keys are module digests: a module only enters any level after its bytes hashed to the digest the signed
manifest names, so "module sha256 matches the manifest" holds for every run that finds its digest here.
A module compiled for a tool set granting `scratch` is a different module (its writes routed through the
run's wasm guard, sandbox/scratch_rewrite.py), cached apart under `<digest>` + SCRATCH_VARIANT; bump the
variant when the rewrite changes, so no artifact of an older one is ever loaded.
Disk artifacts are keyed by digest *and* the engine fingerprint (wasmtime version and every setting that
shapes code), carry a sha256 of their own bytes against corruption, and are written atomically.
`Module.deserialize` trusts its input (it is native code), so AF_DATA_DIR must be writable by the
executor only; a corrupt or incompatible artifact is deleted and recompiled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from services.common.errors import FailedPrecondition
from services.common.sized_cache import SizedLru
from services.executor import metrics
from services.executor.disk_cache import DiskModuleStore
from services.executor.sandbox import Prepared, Sandbox
from services.executor.wasm_binary import check_bounds

log = logging.getLogger(__name__)

DEFAULT_MEMORY_BYTES = 512 * 1024 * 1024
# What a loaded module costs at least, whatever its serialized size: its code mapping (whole pages), its
# wasmtime registration, its linked InstancePre and the executor's template and verification entries.
# Measured (perf/SCALE.md, executor_startup): about 29 KiB of RSS per tiny module; counting tiny modules
# by their ~14 KiB serialized size let 10,000 of them take 2.6x the executor's base RSS in a 64 MiB budget.
MIN_MODULE_COST = 32 * 1024
DEFAULT_DISK_BYTES = 2 * 1024 * 1024 * 1024
SCRATCH_VARIANT = "+scratch2"


def cache_key(digest: str, scratch: bool) -> str:
    """The key of a module compiled for a tool set with (`scratch`) or without `scratch`."""
    return digest + SCRATCH_VARIANT if scratch else digest


@dataclass
class Compiled:
    digest: str
    module: wasmtime.Module
    linked: dict[frozenset[str], Prepared] = field(default_factory=dict)
    linked_fs: dict[frozenset[str], Prepared] = field(default_factory=dict)  # WASI owns stdio (template files)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModuleCache:
    def __init__(
        self,
        sandbox: Sandbox,
        data_dir: Path,
        max_entries: int,
        max_bytes: int,
        max_imports: int,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        disk_bytes: int = DEFAULT_DISK_BYTES,
    ) -> None:
        """`max_bytes`/`max_imports` are the policy's bounds on a module; `memory_bytes`/`disk_bytes` and
        `max_entries` bound the two cache levels."""
        self.sandbox = sandbox
        self.dir = data_dir / "modules"
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.max_bytes = max_bytes
        self.max_imports = max_imports
        self._memory: SizedLru[str, Compiled] = SizedLru("executor_modules", memory_bytes, max_entries)
        self.disk = DiskModuleStore(self.dir, disk_bytes)

    @property
    def memory(self) -> SizedLru[str, Compiled]:
        return self._memory

    def _name(self, digest: str, scratch: bool = False) -> str:
        return f"{cache_key(digest, scratch)}-{self.sandbox.fingerprint}.cwasm"

    def _path(self, digest: str, scratch: bool = False) -> Path:
        return self.dir / self._name(digest, scratch)

    def on_disk(self, digest: str, scratch: bool = False) -> bool:
        return self._name(digest, scratch) in self.disk

    def expected_size(self, digest: str, module_size: int, scratch: bool = False) -> int:
        """A module's memory before loading it: its artifact's size when on disk, else its wasm size (a
        lower bound: compiled code is larger, which the cache accounts for once it is compiled)."""
        return max(self.disk.size(self._name(digest, scratch)) or module_size, MIN_MODULE_COST)

    def fits_in_memory(self, size: int) -> bool:
        """Whether a fill-in of about `size` bytes would find free room in memory."""
        return self._memory.fits(size)

    def from_memory(self, digest: str, scratch: bool = False) -> Compiled | None:
        found = self._memory.get(cache_key(digest, scratch))
        metrics.MODULE_CACHE.labels("memory", "hit" if found else "miss").inc()
        return found

    def from_disk(self, digest: str, evict: bool = True, scratch: bool = False) -> Compiled | None:
        """Blocking (file I/O and deserialization): call from a worker thread."""
        path = self._path(digest, scratch)
        raw = self.disk.read(path.name)
        if raw is None:
            metrics.MODULE_CACHE.labels("disk", "miss").inc()
            return None
        checksum, payload = raw[:32], raw[32:]
        try:
            if hashlib.sha256(payload).digest() != checksum:
                raise ValueError("checksum mismatch")
            module = self.sandbox.deserialize(payload)
        except (ValueError, wasmtime.WasmtimeError) as exc:
            log.warning("dropping unusable compiled module %s: %s", path.name, exc)
            self.disk.delete(path.name)
            metrics.MODULE_CACHE.labels("disk", "miss").inc()
            return None
        metrics.MODULE_CACHE.labels("disk", "hit").inc()
        compiled = Compiled(digest, module)
        self._memory.put(cache_key(digest, scratch), compiled, max(len(payload), MIN_MODULE_COST), evict=evict)
        return compiled

    def compile(self, digest: str, wasm: bytes, evict: bool = True, scratch: bool = False) -> Compiled:
        """Blocking: check the digest and the policy's module bounds, compile, cache at both levels."""
        actual = hashlib.sha256(wasm).hexdigest()
        if actual != digest:
            metrics.VERIFICATION_FAILURES.labels("module_digest").inc()
            raise FailedPrecondition(f"module digest mismatch: the manifest names {digest}, the bytes hash to {actual}")
        check_bounds(wasm, self.max_bytes, self.max_imports)
        began = time.perf_counter()
        module = self.sandbox.compile(wasm, scratch)
        metrics.COMPILE_SECONDS.observe(time.perf_counter() - began)
        compiled = Compiled(digest, module)
        payload = module.serialize()
        self._memory.put(cache_key(digest, scratch), compiled, max(len(payload), MIN_MODULE_COST), evict=evict)
        try:
            self.disk.write(self._name(digest, scratch), hashlib.sha256(payload).digest() + payload)
        except OSError as exc:  # the disk level is an optimisation; a full disk must not fail runs
            log.warning("could not store compiled module %s: %s", digest, exc)
        return compiled

    def link(self, compiled: Compiled, tools: frozenset[str], ref: str, wasi_fs: bool = False) -> Prepared:
        """`wasi_fs`: the run mounts template files, so WASI owns stdio as with `scratch`."""
        table = compiled.linked_fs if wasi_fs else compiled.linked
        with compiled.lock:
            prepared = table.get(tools)
            if prepared is None:
                prepared = self.sandbox.link(compiled.module, tools, ref, wasi_fs)
                table[tools] = prepared
            return prepared

    def drop(self, digest: str) -> None:
        """Forget a module in memory (deprecated templates); the disk artifact stays for a cheap comeback."""
        self._memory.invalidate(cache_key(digest, False))
        self._memory.invalidate(cache_key(digest, True))
