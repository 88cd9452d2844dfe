"""What read-only template files cost a run whose files are cached (issue 14 item 2, Speed).

    .venv/bin/python perf/sandbox/files_bench.py [--runs 3000]

Workload: examples/agents/spell-check (reads /data/words.txt, checks its input, tries two writes).
Variants, on one Sandbox built from the executor's EngineSettings, linked as a run with a preopen:
- no-mount:   Sandbox.run with `scratch` granted and no template files (spell-check then finds no word
              list and exits 1 after opening it: the cost of a run without the mount, same stdio path);
- mount-unused: the same plus the cached tree preopened read-only at /unused, where the program does not
              look: the same guest work as no-mount, so the difference is what the mount itself costs;
- mount:      the word list mounted read-only at /data from a cached tree (the program then also reads,
              sorts and checks it: guest work, not mount cost);
- acquire:    TemplateFiles.acquire + release of that cached tree alone, through the coroutine;
- acquire-cached: TemplateFiles.acquire_cached + release, the executor's per-run path for a cached tree
              (ExecutorService._mount), besides the preopen;
- plain:      no `scratch`, no files: the executor's own stdio host functions (the path of most templates);
- files-unused: no `scratch`, the cached tree preopened at /unused: the same guest work as plain, so the
              difference is everything shipping files costs a template without `scratch` per run (WASI's
              stdin from memory, the preopen, the run's descriptor table; stdout/stderr are ours as in plain).
Reports the median and p95 of wall time and the median CPU time per run (wall time on a loaded machine is
mostly noise). A template without files takes none of this path (one truthiness check per run).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from services.executor.events import Started  # noqa: E402
from services.executor.files import TemplateFiles  # noqa: E402
from services.executor.sandbox import EngineSettings, Prepared, RunSpec, RunState, Sandbox  # noqa: E402
from services.templates.manifest import Limits, TemplateFile  # noqa: E402
from services.templates.policy import FileBounds  # noqa: E402

LIMITS = Limits(fuel=10**9, memory_bytes=16 << 20, timeout_ms=5000, max_output_bytes=65536, max_tool_calls=100)
WORDS = (REPO / "examples/agents/spell-check/files/data/words.txt").read_bytes()
TEXT = b"To be or not to be, that is the question"
ROUNDS = 4


def timed(fn: Callable[[], None], runs: int) -> list[tuple[float, float]]:
    out = []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        out.append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def row(name: str, samples: list[tuple[float, float]]) -> str:
    walls = sorted(s[0] for s in samples)
    cpu = statistics.median(s[1] for s in samples)
    p95 = walls[int(len(walls) * 0.95) - 1]
    return f"| {name} | {len(samples)} | {statistics.median(walls) * 1e6:.0f} | {p95 * 1e6:.0f} | {cpu * 1e6:.0f} |"


def main(runs: int) -> None:
    sandbox = Sandbox(EngineSettings())
    tools = frozenset({"scratch"})
    wasm = (REPO / "build/wasm/spell-check.wasm").read_bytes()
    module = sandbox.compile(wasm)
    # The scratch variants run the module as the executor compiles it for a tool set with `scratch`.
    prepared = sandbox.link(sandbox.compile(wasm, scratch=True), tools, "b@1", True)
    plain = sandbox.link(module, frozenset(), "b@1")
    files_only = sandbox.link(module, frozenset(), "b@1", True)
    entry = TemplateFile(hashlib.sha256(WORDS).hexdigest(), len(WORDS))

    async def fetch(_digest: str, _max: int) -> bytes:
        return WORDS

    with tempfile.TemporaryDirectory() as tmp:
        cache = TemplateFiles(Path(tmp), 1 << 30, FileBounds(), fetch)
        loop = asyncio.new_event_loop()
        files = {"/data/words.txt": entry}
        loop.run_until_complete(cache.acquire(files)).release()  # built once: every run below hits the cache
        mounts = loop.run_until_complete(cache.acquire(files))

        def run(guest: str | None, linked: Prepared = prepared, granted: frozenset[str] = tools) -> Callable[[], None]:
            def once() -> None:
                spec = RunSpec(LIMITS, TEXT, ["b"], {}, granted, Started("0" * 64, 1, "memory"), lambda _e: None)
                if guest is not None:
                    spec.mounts = tuple((host, guest) for host, _ in mounts.dirs)
                sandbox.run(linked, RunState(spec, 0.0))

            return once

        def acquire() -> None:
            loop.run_until_complete(cache.acquire(files)).release()

        def acquire_cached() -> None:
            found = cache.acquire_cached(files) if hasattr(cache, "acquire_cached") else None
            if found is None:  # a tree without the per-run path (before it existed): the coroutine
                found = loop.run_until_complete(cache.acquire(files))
            found.release()

        results: dict[str, list[tuple[float, float]]] = {}
        for _ in range(ROUNDS):  # interleaved rounds: load on the machine hits both variants alike
            variants = (
                ("no-mount", run(None)),
                ("mount-unused", run("/unused")),
                ("mount", run("/data")),
                ("acquire", acquire),
                ("acquire-cached", acquire_cached),
                ("plain", run(None, plain, frozenset())),
                ("files-unused", run("/unused", files_only, frozenset())),
            )
            for name, fn in variants:
                results.setdefault(name, []).extend(timed(fn, runs // ROUNDS))
        mounts.release()
        loop.close()
    sandbox.close()
    print("| variant | runs | p50 µs | p95 µs | CPU p50 µs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, samples in results.items():
        print(row(name, samples))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000)
    main(parser.parse_args().runs)
