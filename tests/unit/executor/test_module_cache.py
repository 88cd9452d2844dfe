"""The compiled-module cache bounded by bytes at both levels, and the start-up warm-up that fills free room
by recency (a real wasmtime sandbox, real files; the registry is an in-memory source)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import wasmtime

from services.executor.disk_cache import DiskModuleStore
from services.executor.kvstore import KvStore
from services.executor.modules import MIN_MODULE_COST, ModuleCache
from services.executor.pool import WorkerPool
from services.executor.sandbox import Sandbox
from services.executor.service import ExecutorService
from services.executor.trust import Trust
from services.templates.manifest import Limits, Manifest
from services.templates.policy import Policy
from services.templates.published import PublishedTemplate
from tests.unit.executor.signed import first_key, signed

POLICY = Policy.load()


def module(i: int) -> bytes:
    """A distinct small module per i (its data segment differs, so its digest does)."""
    wat = f'(module (memory (export "memory") 1) (func (export "_start")) (data (i32.const 0) "m{i}"))'
    return bytes(wasmtime.wat2wasm(wat))


def digest(wasm: bytes) -> str:
    return hashlib.sha256(wasm).hexdigest()


def cache(sandbox: Sandbox, data: Path, memory_bytes: int, disk_bytes: int = 1 << 30) -> ModuleCache:
    return ModuleCache(
        sandbox, data, 1000, POLICY.max_module_bytes, POLICY.max_module_imports, memory_bytes, disk_bytes
    )


def artifact_size(sandbox: Sandbox, tmp: Path, level: str = "memory") -> int:
    """What one small module counts for in memory (at least MIN_MODULE_COST) or on disk (its file)."""
    probe = cache(sandbox, tmp / f"probe-{level}", 1 << 30)
    wasm = module(0)
    probe.compile(digest(wasm), wasm)
    return probe.memory.bytes if level == "memory" else probe.disk.bytes


def test_memory_level_is_bounded_by_bytes(sandbox: Sandbox, tmp_path: Path) -> None:
    size = artifact_size(sandbox, tmp_path)
    assert size == MIN_MODULE_COST  # a tiny module counts for what loading it really costs
    modules = cache(sandbox, tmp_path, memory_bytes=3 * size)
    wasms = [module(i) for i in range(1, 6)]
    for wasm in wasms:
        modules.compile(digest(wasm), wasm)
    assert modules.memory.bytes <= 3 * size and len(modules.memory) == 3
    assert [modules.from_memory(digest(w)) is not None for w in wasms] == [False, False, True, True, True]
    # Everything is still on disk: an evicted module comes back without compiling.
    assert modules.from_disk(digest(wasms[0])) is not None


def test_disk_level_is_pruned_least_recently_used_first(sandbox: Sandbox, tmp_path: Path) -> None:
    size = artifact_size(sandbox, tmp_path, "disk")
    modules = cache(sandbox, tmp_path, memory_bytes=1 << 30, disk_bytes=3 * size)
    wasms = [module(i) for i in range(1, 5)]
    for wasm in wasms[:3]:
        modules.compile(digest(wasm), wasm)
    assert modules.from_disk(digest(wasms[0])) is not None  # 0 used again: 1 is now the oldest
    modules.compile(digest(wasms[3]), wasms[3])
    on_disk = sorted(p.name.split("-")[0] for p in (tmp_path / "modules").glob("*.cwasm"))
    assert on_disk == sorted(digest(w) for w in (wasms[0], wasms[2], wasms[3]))
    assert modules.disk.bytes == 3 * size <= modules.disk.max_bytes


def test_disk_index_at_start_up_orders_by_mtime_prunes_and_drops_leftovers(tmp_path: Path) -> None:
    directory = tmp_path / "modules"
    directory.mkdir()
    for i, name in enumerate(["old", "mid", "new"]):
        path = directory / f"{name}-fp.cwasm"
        path.write_bytes(b"x" * 100)
        os.utime(path, (1000 + i, 1000 + i))
    (directory / "crashed-fp.cwasm.tmp123").write_bytes(b"partial")
    store = DiskModuleStore(directory, max_bytes=250)
    assert sorted(p.name for p in directory.iterdir()) == ["mid-fp.cwasm", "new-fp.cwasm"]
    assert store.bytes == 200 and "old-fp.cwasm" not in store


class Source:
    def __init__(self, count: int) -> None:
        self.templates: list[PublishedTemplate] = []
        self.modules: dict[str, bytes] = {}
        self.fetched: list[str] = []
        for i in range(count):
            wasm = module(100 + i)
            self.modules[digest(wasm)] = wasm
            limits = Limits(
                fuel=10**6, memory_bytes=16 << 20, timeout_ms=5000, max_output_bytes=65536, max_tool_calls=10
            )
            manifest = Manifest(name=f"t{i}", version="1.0.0", limits=limits, module_sha256=digest(wasm))
            self.templates.append(signed(manifest, len(wasm), i + 1))

    async def get_template(self, name: str, version: str) -> PublishedTemplate:
        return next(t for t in self.templates if t.manifest.name == name)

    async def fetch_module(self, sha256: str, max_bytes: int) -> bytes:
        self.fetched.append(sha256)
        return self.modules[sha256]

    async def list_published(self) -> list[PublishedTemplate]:
        return list(self.templates)

    async def watch(self, after_revision: int) -> AsyncIterator[object]:
        return
        yield


def service(source: Source, sandbox: Sandbox, tmp: Path, memory_bytes: int) -> ExecutorService:
    trust = Trust(first_key, POLICY)
    return ExecutorService(
        "executor-test",
        source,  # type: ignore[arg-type]
        trust,
        cache(sandbox, tmp, memory_bytes),
        sandbox,
        WorkerPool(0, 1, 1),
        KvStore(tmp / "kv.sqlite3"),
        POLICY,
    )


def test_warm_up_fills_free_room_most_recent_first_and_never_evicts(sandbox: Sandbox, tmp_path: Path) -> None:
    size = artifact_size(sandbox, tmp_path)
    source = Source(10)
    svc = service(source, sandbox, tmp_path, memory_bytes=4 * size)

    async def scenario() -> None:
        await svc.trust.refresh()
        hot = source.templates[0]  # the oldest template, but a run is using it
        await svc.ready(hot.manifest.name, "1.0.0")
        templates = await svc.catalog()
        assert [t.revision for t in templates] == list(range(10, 0, -1)) and svc.last_revision == 10
        loaded = await svc.fill(templates)
        assert loaded == 3  # the room left beside the hot module
        in_memory = {t.revision for t in source.templates if t.manifest.module_sha256 in svc.modules.memory}
        assert in_memory == {1, 10, 9, 8}
        assert svc.modules.memory.bytes <= 4 * size
        # It stopped once memory was full: the older templates were neither fetched nor compiled.
        assert len(source.fetched) == 4

    try:
        asyncio.run(scenario())
    finally:
        svc.pool.close()


def test_warm_up_after_a_restart_loads_from_disk_without_compiling(sandbox: Sandbox, tmp_path: Path) -> None:
    source = Source(3)
    first = service(source, sandbox, tmp_path, memory_bytes=1 << 30)
    asyncio.run(first.trust.refresh())
    asyncio.run(first.warm())
    first.pool.close()
    source.fetched.clear()
    again = service(source, sandbox, tmp_path, memory_bytes=1 << 30)
    try:
        asyncio.run(again.trust.refresh())
        assert asyncio.run(again.fill(asyncio.run(again.catalog()))) == 3
        assert source.fetched == []
    finally:
        again.pool.close()


def test_a_module_compiled_for_scratch_is_cached_apart(sandbox: Sandbox, tmp_path: Path) -> None:
    # Compiled for a tool set with `scratch` its writes are routed (sandbox/scratch_rewrite.py): another
    # module, which must never be found under the plain one's key, in memory or on disk, nor the reverse.
    wat = """(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1) (func (export "_start")))"""
    wasm = bytes(wasmtime.wat2wasm(wat))
    modules = cache(sandbox, tmp_path, 1 << 30)
    routed = modules.compile(digest(wasm), wasm, scratch=True)
    assert {imp.module for imp in routed.module.imports} == {"agentfactory:scratch"}
    assert modules.from_memory(digest(wasm)) is None and not modules.on_disk(digest(wasm))
    plain = modules.compile(digest(wasm), wasm)
    assert {imp.module for imp in plain.module.imports} == {"wasi_snapshot_preview1"}
    fresh = cache(sandbox, tmp_path, 1 << 30)  # a restart: the disk level only
    for scratch, imported in ((True, "agentfactory:scratch"), (False, "wasi_snapshot_preview1")):
        found = fresh.from_disk(digest(wasm), scratch=scratch)
        assert found is not None and {imp.module for imp in found.module.imports} == {imported}
