"""File-system workload: the executor's `scratch` run path against bare wasmtime-py (issue 14, Speed).

    .venv/bin/python perf/sandbox/fs_bench.py [--runs 300]

The guest (WAT below) creates /blob, writes 1 MiB in 4 KiB blocks, seeks back, reads it back in
4 KiB blocks and writes the byte count read to stdout: 512 WASI file calls, all wasmtime's own in both
variants. Variants, on one Engine built from the executor's EngineSettings and the same preopens:
- bare-reused: new Store + fuel + WASI (stdout file) + InstancePre + _start, one directory for all runs;
- bare-fresh:  the same with a new temporary directory per run, removed after it (what isolation costs);
- executor:    Sandbox.run with `scratch` granted (private directory, the scratch cap, clean-up), the module
               compiled as the executor compiles it for such a tool set (scratch_rewrite.py).
Reports wall-clock median and p95 per run, the median CPU time of the process (wasmtime may do file I/O
on threads of its own), and the executor's CPU overhead against each bare variant (CPU time, because wall
time on a loaded machine is mostly noise).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import wasmtime

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from services.executor.events import Started  # noqa: E402
from services.executor.sandbox import EngineSettings, RunSpec, RunState, Sandbox  # noqa: E402
from services.templates.manifest import Limits  # noqa: E402

BLOCK, BLOCKS = 4096, 256
LIMITS = Limits(fuel=10**9, memory_bytes=16 << 20, timeout_ms=10_000, max_output_bytes=65536, max_tool_calls=100)

# fd 3 is the run's `/` in both variants (it is preopened first). Memory: 0..15 iovec, 16 fd, 24 nread,
# 32 seek offset, 40 total read, 4096.. the 4 KiB block, 100 the path.
WAT = f"""(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "blob")
  (func (export "_start")
    (local $i i32) (local $fd i32)
    (if (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 9)
          (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 16))
      (then (call $exit (i32.const 2))))
    (local.set $fd (i32.load (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 4096)) (i32.store (i32.const 4) (i32.const {BLOCK}))
    (block $done (loop $again
      (br_if $done (i32.ge_u (local.get $i) (i32.const {BLOCKS})))
      (i32.store8 (i32.const 4096) (local.get $i))
      (if (call $write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 24)) (then (call $exit (i32.const 3))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again)))
    (if (call $seek (local.get $fd) (i64.const 0) (i32.const 0) (i32.const 32)) (then (call $exit (i32.const 4))))
    (local.set $i (i32.const 0))
    (block $done (loop $again
      (br_if $done (i32.ge_u (local.get $i) (i32.const {BLOCKS})))
      (if (call $read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 24)) (then (call $exit (i32.const 5))))
      (i32.store (i32.const 40) (i32.add (i32.load (i32.const 40)) (i32.load (i32.const 24))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again)))
    (drop (call $close (local.get $fd)))
    (i32.store (i32.const 0) (i32.const 40)) (i32.store (i32.const 4) (i32.const 4))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 24)))))
"""
EXPECTED = (BLOCK * BLOCKS).to_bytes(4, "little")


def bare(sandbox: Sandbox, module: wasmtime.Module, fresh: bool, tmp: Path):  # type: ignore[no-untyped-def]
    linker = wasmtime.Linker(sandbox.engine)
    linker.define_wasi()
    pre = linker.instantiate_pre(module)
    reused = tmp / "reused"
    (reused / "scratch").mkdir(parents=True, exist_ok=True)

    def once() -> None:
        root = Path(tempfile.mkdtemp(prefix="af-bare-")) if fresh else reused
        (root / "scratch").mkdir(exist_ok=True)
        store = wasmtime.Store(sandbox.engine)
        store.set_fuel(LIMITS.fuel)
        store.set_epoch_deadline(1_000_000)
        wasi = wasmtime.WasiConfig()
        wasi.preopen_dir(str(root), "/")
        wasi.preopen_dir(str(root / "scratch"), "/scratch")
        wasi.stdout_file = str(tmp / "out")
        store.set_wasi(wasi)
        with contextlib.suppress(wasmtime.ExitTrap):
            pre.instantiate(store).exports(store)["_start"](store)
        if fresh:
            shutil.rmtree(root)

    return once


def executor(sandbox: Sandbox, module: wasmtime.Module):  # type: ignore[no-untyped-def]
    tools = frozenset({"scratch"})
    prepared = sandbox.link(module, tools, "fs-bench@1.0.0")

    def once() -> None:
        out: list = []
        spec = RunSpec(LIMITS, b"", ["fs-bench"], {}, tools, Started("0" * 64, 1, "memory"), out.extend)
        finished = sandbox.run(prepared, RunState(spec, 0.0))
        assert finished.outcome.value == "succeeded", finished
        data = b"".join(e.data for e in out if type(e).__name__ == "Output")
        assert data == EXPECTED, data

    return once


def timed(fn, runs: int) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    """(wall, CPU of the process) per run. CPU time is the figure to compare on a loaded machine: the wall
    time also holds whatever else the cores were doing."""
    samples = []
    for _ in range(runs):
        began, cpu = time.perf_counter(), time.process_time()
        fn()
        samples.append((time.perf_counter() - began, time.process_time() - cpu))
    return samples


def main(runs: int) -> None:
    sandbox = Sandbox(EngineSettings())
    module = sandbox.compile(bytes(wasmtime.wat2wasm(WAT)))
    tmp = Path(tempfile.mkdtemp(prefix="af-fs-bench-"))
    variants = {"bare-reused": bare(sandbox, module, False, tmp), "bare-fresh": bare(sandbox, module, True, tmp)}
    # As the executor compiles a module for a tool set with `scratch`: its writes checked in wasm.
    variants["executor"] = executor(sandbox, sandbox.compile(bytes(wasmtime.wat2wasm(WAT)), scratch=True))
    for fn in variants.values():
        timed(fn, 20)  # warm caches and the page cache
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(5):  # interleaved rounds, so drift hits every variant alike
        for name, fn in variants.items():
            samples[name] += timed(fn, max(runs // 5, 1))
    cpu = {name: statistics.median(c for _, c in s) * 1e3 for name, s in samples.items()}
    print("| variant | runs | wall p50 ms | wall p95 ms | CPU p50 ms | executor CPU vs this |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, s in samples.items():
        walls = sorted(w for w, _ in s)
        over = 100 * (cpu["executor"] - cpu[name]) / cpu[name]
        print(
            f"| {name} | {len(s)} | {statistics.median(walls) * 1e3:.2f} | {walls[int(len(walls) * 0.95)] * 1e3:.2f} "
            f"| {cpu[name]:.2f} | {over:+.1f} % |"
        )
    shutil.rmtree(tmp)
    sandbox.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    main(parser.parse_args().runs)
