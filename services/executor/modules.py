"""Compiled modules, three levels deep: an in-memory LRU, serialized artifacts on disk, the registry last.

Keys are module digests: a module only enters any level after its bytes hashed to the digest the signed
manifest names, so "module sha256 matches the manifest" holds for every run that finds its digest here.
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

from services.common.cache import LruTtlCache
from services.common.errors import FailedPrecondition
from services.executor import metrics
from services.executor.sandbox import Prepared, Sandbox
from services.executor.wasm_binary import check_bounds

log = logging.getLogger(__name__)

MEMORY_TTL_SECONDS = 7 * 24 * 3600.0  # digests are immutable; only capacity should evict


@dataclass
class Compiled:
    digest: str
    module: wasmtime.Module
    linked: dict[frozenset[str], Prepared] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModuleCache:
    def __init__(self, sandbox: Sandbox, data_dir: Path, max_entries: int, max_bytes: int, max_imports: int) -> None:
        self.sandbox = sandbox
        self.dir = data_dir / "modules"
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.max_bytes = max_bytes
        self.max_imports = max_imports
        self._memory: LruTtlCache[str, Compiled] = LruTtlCache("executor_modules", max_entries, MEMORY_TTL_SECONDS)

    def _path(self, digest: str) -> Path:
        return self.dir / f"{digest}-{self.sandbox.fingerprint}.cwasm"

    def from_memory(self, digest: str) -> Compiled | None:
        found = self._memory.get(digest)
        metrics.MODULE_CACHE.labels("memory", "hit" if found else "miss").inc()
        return found

    def from_disk(self, digest: str) -> Compiled | None:
        """Blocking (file I/O and deserialization): call from a worker thread."""
        path = self._path(digest)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            metrics.MODULE_CACHE.labels("disk", "miss").inc()
            return None
        checksum, payload = raw[:32], raw[32:]
        try:
            if hashlib.sha256(payload).digest() != checksum:
                raise ValueError("checksum mismatch")
            module = self.sandbox.deserialize(payload)
        except (ValueError, wasmtime.WasmtimeError) as exc:
            log.warning("dropping unusable compiled module %s: %s", path.name, exc)
            path.unlink(missing_ok=True)
            metrics.MODULE_CACHE.labels("disk", "miss").inc()
            return None
        metrics.MODULE_CACHE.labels("disk", "hit").inc()
        compiled = Compiled(digest, module)
        self._memory.put(digest, compiled)
        return compiled

    def compile(self, digest: str, wasm: bytes) -> Compiled:
        """Blocking: check the digest and the policy's module bounds, compile, cache at both levels."""
        actual = hashlib.sha256(wasm).hexdigest()
        if actual != digest:
            metrics.VERIFICATION_FAILURES.labels("module_digest").inc()
            raise FailedPrecondition(f"module digest mismatch: the manifest names {digest}, the bytes hash to {actual}")
        check_bounds(wasm, self.max_bytes, self.max_imports)
        began = time.perf_counter()
        module = self.sandbox.compile(wasm)
        metrics.COMPILE_SECONDS.observe(time.perf_counter() - began)
        compiled = Compiled(digest, module)
        self._memory.put(digest, compiled)
        try:
            payload = module.serialize()
            path = self._path(digest)
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_bytes(hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, path)
        except OSError as exc:  # the disk level is an optimisation; a full disk must not fail runs
            log.warning("could not store compiled module %s: %s", digest, exc)
        return compiled

    def link(self, compiled: Compiled, tools: frozenset[str], ref: str) -> Prepared:
        with compiled.lock:
            prepared = compiled.linked.get(tools)
            if prepared is None:
                prepared = self.sandbox.link(compiled.module, tools, ref)
                compiled.linked[tools] = prepared
            return prepared

    def drop(self, digest: str) -> None:
        """Forget a module in memory (deprecated templates); the disk artifact stays for a cheap comeback."""
        self._memory.invalidate(digest)
