"""Read-only template files in the sandbox and the executor's file cache: mounted with wasmtime's
`preopen_dir(..., fs_mutable=False)` (a write or a create fails with an errno, as under bare wasmtime),
fetched and checked against the signed digest before anything is mounted, kept under a byte bound."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path

import pytest
import wasmtime

from services.common.errors import FailedPrecondition
from services.executor import files as files_module
from services.executor.events import Outcome
from services.executor.files import TemplateFiles, tree_key
from services.templates.manifest import TemplateFile
from services.templates.policy import FileBounds
from tests.unit.executor.conftest import Runner, run_bare_wasi, wasm_file

WORDS = b"a\nbe\nnot\nor\nthe\nto\n"
TEXT = b"To be or not to be, that is the question"


def bare_wasmtime(wasm: bytes, data_dir: Path, workdir: Path) -> bytes:
    """The reference: wasmtime-py's own WASI with the same read-only preopen at /data."""
    config = wasmtime.WasiConfig()
    config.argv = ["spell-check"]
    config.preopen_dir(str(data_dir), "/data", fs_mutable=False)
    (workdir / "stdin").write_bytes(TEXT)
    config.stdin_file = str(workdir / "stdin")
    return run_bare_wasi(wasm, config, workdir / "stdout")


def run_with_files(runner: Runner, data_dir: Path, tools: frozenset[str] = frozenset()) -> tuple[Outcome, bytes]:
    prepared = runner.sandbox.link(
        runner.sandbox.compile(wasm_file("spell-check"), "scratch" in tools), tools, "t@1.0.0", True
    )
    state = runner.state(prepared, TEXT, tools)
    state.spec.mounts = ((str(data_dir), "/data"),)
    finished = runner.sandbox.run(prepared, state)
    output = b"".join(e.data for e in state.events if type(e).__name__ == "Output")  # type: ignore[attr-defined]
    return finished.outcome, output


@pytest.mark.parametrize("tools", [frozenset(), frozenset({"scratch"})])
def test_files_are_readable_and_writes_fail_as_under_bare_wasmtime(
    runner: Runner, tmp_path: Path, tools: frozenset[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "words.txt").write_bytes(WORDS)
    reference = bare_wasmtime(wasm_file("spell-check"), data, tmp_path)
    outcome, output = run_with_files(runner, data, tools)
    assert outcome is Outcome.SUCCEEDED, output.decode()
    assert output == reference
    lines = output.decode().splitlines()
    assert lines[:3] == ["that", "is", "question"] and lines[3] == "checked 10 words, 3 unknown"
    assert lines[4].startswith("read-only: yes (errno ") and lines[5].startswith("create: refused (errno ")
    assert (data / "words.txt").read_bytes() == WORDS and sorted(p.name for p in data.iterdir()) == ["words.txt"]


BOUNDS = FileBounds(allowed_dirs=("/data", "/etc/agent"))


class Registry:
    """Blobs by digest, as the registry's FetchModule serves them; `tamper` swaps one's bytes."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.fetches = 0

    def add(self, data: bytes) -> TemplateFile:
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return TemplateFile(digest, len(data))

    async def fetch(self, digest: str, max_bytes: int) -> bytes:
        self.fetches += 1
        return self.blobs[digest][: max_bytes + 1]


def test_a_tree_mounts_each_allowed_directory_read_only(tmp_path: Path) -> None:
    registry = Registry()
    files = {"/data/words.txt": registry.add(WORDS), "/etc/agent/conf/c.json": registry.add(b"{}")}
    cache = TemplateFiles(tmp_path, 1 << 20, BOUNDS, registry.fetch)

    async def go() -> None:
        mounts = await cache.acquire(files)
        guest = {g: Path(h) for h, g in mounts.dirs}
        assert set(guest) == {"/data", "/etc/agent"}
        assert (guest["/data"] / "words.txt").read_bytes() == WORDS
        assert (guest["/etc/agent"] / "conf" / "c.json").read_bytes() == b"{}"
        again = await cache.acquire(dict(reversed(list(files.items()))))  # same set, any order: one tree
        assert again.dirs == mounts.dirs and registry.fetches == 2
        mounts.release()
        again.release()

    asyncio.run(go())
    assert tree_key(files) in {p.name for p in (tmp_path / "trees").iterdir()}


def test_a_tampered_blob_is_refused_before_anything_is_mounted(tmp_path: Path) -> None:
    registry = Registry()
    entry = registry.add(WORDS)
    registry.blobs[entry.sha256] = WORDS.upper()  # the registry's blob no longer matches the signed digest
    cache = TemplateFiles(tmp_path, 1 << 20, BOUNDS, registry.fetch)
    with pytest.raises(FailedPrecondition, match="hashes to"):
        asyncio.run(cache.acquire({"/data/words.txt": entry}))
    assert list((tmp_path / "trees").iterdir()) == [] and cache.cached_bytes == 0


def test_the_cache_keeps_to_its_bound_but_never_drops_a_tree_in_use(tmp_path: Path) -> None:
    registry = Registry()
    first = {"/data/a": registry.add(b"x" * 600)}
    second = {"/data/b": registry.add(b"y" * 600)}
    cache = TemplateFiles(tmp_path, 1000, BOUNDS, registry.fetch)

    async def go() -> None:
        held = await cache.acquire(first)
        other = await cache.acquire(second)  # 1,200 bytes > 1,000, but both are in use
        assert cache.cached_bytes == 1200
        held.release()  # the least recently used one, now free, goes
        assert cache.cached_bytes == 600 and not Path(held.dirs[0][0]).exists()
        assert Path(other.dirs[0][0], "b").read_bytes() == b"y" * 600
        other.release()

    asyncio.run(go())


def test_trees_left_by_an_earlier_process_are_not_trusted(tmp_path: Path) -> None:
    stale = tmp_path / "trees" / ("0" * 64)
    stale.mkdir(parents=True)
    TemplateFiles(tmp_path, 1000, BOUNDS, Registry().fetch)
    assert not stale.exists()


def test_an_evicted_tree_built_again_meanwhile_is_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's release evicts a tree (bound 0) from a worker thread and is held right where it deletes the
    tree's directory; meanwhile a run of the same template builds it again. The new tree must land (not
    fail on the old directory still being there) and outlive the old one's deletion."""
    registry = Registry()
    files = {"/data/words.txt": registry.add(WORDS)}
    cache = TemplateFiles(tmp_path, 0, BOUNDS, registry.fetch)
    deleting, go = threading.Event(), threading.Event()
    real_remove = files_module._remove

    def held_remove(path: Path) -> None:
        deleting.set()
        go.wait()
        real_remove(path)

    async def go_() -> None:
        first = await cache.acquire(files)
        monkeypatch.setattr(files_module, "_remove", held_remove)
        releasing = threading.Thread(target=first.release)  # runs release from worker threads
        releasing.start()
        try:
            while not deleting.wait(0.01):  # no time bound: only until the thread reaches the deletion
                assert releasing.is_alive(), "the release never reached the deletion"
            assert cache.cached_bytes == 0
            monkeypatch.setattr(files_module, "_remove", real_remove)
            again = await cache.acquire(files)  # built again while the old tree is being deleted
        finally:
            go.set()
            await asyncio.to_thread(releasing.join)
        assert registry.fetches == 2
        assert (Path(again.dirs[0][0]) / "words.txt").read_bytes() == WORDS
        assert cache.acquire_cached(files) is not None and cache.cached_bytes == len(WORDS)

    asyncio.run(go_())
    assert sorted(p.name for p in (tmp_path / "trees").iterdir()) == [tree_key(files)]  # no trash left behind
