"""What read-only template files cost a run whose files are cached (issue 14 item 2, Speed).

    .venv/bin/python perf/sandbox/files_bench.py [--runs 3000]

Workload: examples/agents/spell-check (reads /data/words.txt, checks its input, tries two writes).
Variants, on one Sandbox built from the executor's EngineSettings, linked for WASI-owned stdio:
- no-mount:   Sandbox.run with `scratch` granted and no template files (spell-check then finds no word
              list and exits 1 after opening it: the cost of a run without the mount, same stdio path);
- mount-unused: the same plus the cached tree preopened read-only at /unused, where the program does not
              look: the same guest work as no-mount, so the difference is what the mount itself costs;
- mount:      the word list mounted read-only at /data from a cached tree (the program then also reads,
              sorts and checks it: guest work, not mount cost);
- acquire:    TemplateFiles.acquire + release of that cached tree alone (the executor's per-run work for
              files besides the preopen).
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
from services.executor.sandbox import EngineSettings, RunSpec, RunState, Sandbox  # noqa: E402
from services.templates.manifest import Limits, TemplateFile  # noqa: E402
from services.templates.policy import FileBounds  # noqa: E402

LIMITS = Limits(fuel=10**9, memory_bytes=16 << 20, timeout_ms=5000, max_output_bytes=65536, max_tool_calls=100)
WORDS = (REPO / "examples/agents/spell-check/files/data/words.txt").read_bytes()
TEXT = b"To be or not to be, that is the question"


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
    prepared = sandbox.link(sandbox.compile((REPO / "build/wasm/spell-check.wasm").read_bytes()), tools, "b@1", True)
    entry = TemplateFile(hashlib.sha256(WORDS).hexdigest(), len(WORDS))

    async def fetch(_digest: str, _max: int) -> bytes:
        return WORDS

    with tempfile.TemporaryDirectory() as tmp:
        cache = TemplateFiles(Path(tmp), 1 << 30, FileBounds(), fetch)
        loop = asyncio.new_event_loop()
        files = {"/data/words.txt": entry}
        loop.run_until_complete(cache.acquire(files)).release()  # built once: every run below hits the cache
        mounts = loop.run_until_complete(cache.acquire(files))

        def run(guest: str | None) -> Callable[[], None]:
            def once() -> None:
                spec = RunSpec(LIMITS, TEXT, ["b"], {}, tools, Started("0" * 64, 1, "memory"), lambda _e: None)
                if guest is not None:
                    spec.mounts = tuple((host, guest) for host, _ in mounts.dirs)
                sandbox.run(prepared, RunState(spec, 0.0))

            return once

        def acquire() -> None:
            loop.run_until_complete(cache.acquire(files)).release()

        results = {}
        for _ in range(2):  # interleaved rounds: load on the machine hits both variants alike
            variants = (
                ("no-mount", run(None)),
                ("mount-unused", run("/unused")),
                ("mount", run("/data")),
                ("acquire", acquire),
            )
            for name, fn in variants:
                results.setdefault(name, []).extend(timed(fn, runs // 2))
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
