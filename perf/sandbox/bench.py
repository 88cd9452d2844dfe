"""Sandbox overhead: the executor's run path against a bare wasmtime-py loop on the same engine settings.

    .venv/bin/python perf/sandbox/bench.py [--runs 2000] [--sieve-runs 30]

Modules: build/wasm/echo-upper.wasm (trivial) and build/wasm/prime-sieve.wasm ({"n": 18000000}, ~50 ms).
Variants, each on the same module and one Engine built from the executor's EngineSettings:
- bare-wasi:  new Store + fuel + epoch deadline + WASI stdin/stdout files + InstancePre + _start
              (the plain wasmtime-py way to run a WASI command);
- bare-host:  the same, with stdin/stdout as minimal host functions (the cheapest possible loop);
- executor-inline:  ExecutorService.ready() (template + verification + module + link, all cached)
              + Sandbox.run with event collection, on the calling thread;
- executor-stream:  ExecutorService.run() end to end minus gRPC: the worker pool, events crossing to the
              event loop through call_soon_threadsafe and an asyncio.Queue (inline fast path off);
- executor-run:     ExecutorService.run() as the executor runs it (AF_EXECUTOR_INLINE_FUEL's default): a pure
              run under the fuel budget stays on the event loop's thread; a longer one goes to the pool.
Reports the median and p95 per run; prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import wasmtime
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from services.common.config import Env  # noqa: E402
from services.executor.kvstore import KvStore  # noqa: E402
from services.executor.modules import ModuleCache  # noqa: E402
from services.executor.pool import WorkerPool  # noqa: E402
from services.executor.sandbox import EngineSettings, RunState, Sandbox  # noqa: E402
from services.executor.service import ExecutorService, RunCommand  # noqa: E402
from services.executor.settings import ExecutorSettings  # noqa: E402
from services.executor.trust import Trust  # noqa: E402
from services.templates.manifest import Limits, Manifest  # noqa: E402
from services.templates.policy import Policy  # noqa: E402
from services.templates.published import PublishedTemplate  # noqa: E402
from services.templates.signature import HASH, PADDING, PublicKeyVersion, SignatureRecord  # noqa: E402

WASM = REPO / "build" / "wasm"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
WORKLOADS = {
    "echo-upper": (b"hello, benchmark", Limits(50_000_000, 16 << 20, 2000, 1 << 20, 100)),
    "prime-sieve": (b'{"n": 18000000}', Limits(2_000_000_000, 32 << 20, 5000, 65536, 100)),
}


class Source:
    def __init__(self) -> None:
        self.templates: dict[tuple[str, str], PublishedTemplate] = {}
        self.modules: dict[str, bytes] = {}

    def add(self, name: str, wasm: bytes, limits: Limits) -> None:
        digest = hashlib.sha256(wasm).hexdigest()
        manifest = Manifest(name=name, version="1.0.0", limits=limits, module_sha256=digest)
        canonical = manifest.canonical_bytes()
        sig = SignatureRecord("templates", 1, KEY.sign(canonical, PADDING, HASH))
        self.templates[(name, "1.0.0")] = PublishedTemplate(manifest, canonical, sig, len(wasm), 1, 0.0)
        self.modules[digest] = wasm

    async def get_template(self, name: str, version: str) -> PublishedTemplate:
        return self.templates[(name, version)]

    async def fetch_module(self, sha256: str, max_bytes: int) -> bytes:
        return self.modules[sha256]

    async def list_published(self) -> list[PublishedTemplate]:
        return list(self.templates.values())

    async def watch(self, after_revision: int):  # type: ignore[no-untyped-def]
        return
        yield


async def keys() -> tuple[list[PublicKeyVersion], dict[str, int]]:
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return [PublicKeyVersion("templates", 1, pem.decode())], {"templates": 1}


def timed(fn, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        out.append(time.perf_counter() - began)
    return out


def bare_wasi(sandbox: Sandbox, module: wasmtime.Module, data: bytes, limits: Limits, tmp: Path):  # type: ignore[no-untyped-def]
    linker = wasmtime.Linker(sandbox.engine)
    linker.define_wasi()
    pre = linker.instantiate_pre(module)
    (tmp / "in").write_bytes(data)

    def once() -> None:
        store = wasmtime.Store(sandbox.engine)
        store.set_fuel(limits.fuel)
        store.set_epoch_deadline(1_000_000)
        wasi = wasmtime.WasiConfig()
        wasi.stdin_file = str(tmp / "in")
        wasi.stdout_file = str(tmp / "out")
        store.set_wasi(wasi)
        with contextlib.suppress(wasmtime.ExitTrap):
            pre.instantiate(store).exports(store)["_start"](store)

    return once


def bare_host(sandbox: Sandbox, module: wasmtime.Module, data: bytes, limits: Limits):  # type: ignore[no-untyped-def]
    state = {"pos": 0, "out": bytearray()}
    i32 = wasmtime.ValType.i32()
    fd = wasmtime.FuncType([i32] * 4, [i32])

    def mem(caller):  # type: ignore[no-untyped-def]
        m = caller.get("memory")
        return ctypes.addressof(m.data_ptr(caller).contents)

    def fd_read(caller, _fd, iovs, n, nread):  # type: ignore[no-untyped-def]
        base = mem(caller)
        total = 0
        for i in range(n):
            ptr, length = (ctypes.c_uint32 * 2).from_address(base + iovs + 8 * i)
            chunk = data[state["pos"] : state["pos"] + length]
            state["pos"] += len(chunk)
            ctypes.memmove(base + ptr, chunk, len(chunk))
            total += len(chunk)
        ctypes.c_uint32.from_address(base + nread).value = total
        return 0

    def fd_write(caller, _fd, iovs, n, nwritten):  # type: ignore[no-untyped-def]
        base = mem(caller)
        total = 0
        for i in range(n):
            ptr, length = (ctypes.c_uint32 * 2).from_address(base + iovs + 8 * i)
            state["out"] += ctypes.string_at(base + ptr, length)
            total += length
        ctypes.c_uint32.from_address(base + nwritten).value = total
        return 0

    linker = wasmtime.Linker(sandbox.engine)
    linker.define_wasi()
    linker.allow_shadowing = True
    linker.define_func("wasi_snapshot_preview1", "fd_read", fd, fd_read, access_caller=True)
    linker.define_func("wasi_snapshot_preview1", "fd_write", fd, fd_write, access_caller=True)
    pre = linker.instantiate_pre(module)

    def once() -> None:
        state["pos"] = 0
        state["out"] = bytearray()
        store = wasmtime.Store(sandbox.engine)
        store.set_fuel(limits.fuel)
        store.set_epoch_deadline(1_000_000)
        store.set_wasi(wasmtime.WasiConfig())
        with contextlib.suppress(wasmtime.ExitTrap):
            pre.instantiate(store).exports(store)["_start"](store)

    return once


INLINE_FUEL = ExecutorSettings.from_env(Env({})).inline_fuel


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e6, ordered[int(len(ordered) * 0.95)] * 1e6


async def main(runs: int, sieve_runs: int) -> None:
    settings = EngineSettings()
    sandbox = Sandbox(settings)
    tmp = Path(tempfile.mkdtemp(prefix="af-bench-"))
    source = Source()
    for name, (_, limits) in WORKLOADS.items():
        source.add(name, (WASM / f"{name}.wasm").read_bytes(), limits)
    policy = Policy.load()
    trust = Trust(keys, policy)
    await trust.refresh()
    service = ExecutorService(
        "bench",
        source,
        trust,
        ModuleCache(sandbox, tmp, 64, policy.max_module_bytes, policy.max_module_imports),
        sandbox,
        WorkerPool(1, 2, 8),
        KvStore(tmp / "kv.sqlite3"),
        policy,
    )
    await service.warm()
    rows = []
    for name, (data, limits) in WORKLOADS.items():
        n = runs if name == "echo-upper" else sieve_runs
        module = service.modules.from_memory(source.templates[(name, "1.0.0")].manifest.module_sha256).module  # type: ignore[union-attr]

        async def executor_inline(name: str = name, data: bytes = data) -> float:
            began = time.perf_counter()
            ready = await service.ready(name, "1.0.0")
            events: list = []
            state = RunState(service._spec(RunCommand("a", name, "1.0.0", data), ready, events.extend), 0.0)
            finished = sandbox.run(ready.prepared, state)
            assert finished.outcome.value == "succeeded", finished
            return time.perf_counter() - began

        async def executor_stream(name: str = name, data: bytes = data, inline_fuel: int = 0) -> float:
            service.inline_fuel = inline_fuel
            began = time.perf_counter()
            async for _event in service.run(RunCommand("a", name, "1.0.0", data)):
                pass
            return time.perf_counter() - began

        variants = {
            "bare-wasi": timed(bare_wasi(sandbox, module, data, limits, tmp), n),
            "bare-host": timed(bare_host(sandbox, module, data, limits), n),
            "executor-inline": [await executor_inline() for _ in range(n)],
            "executor-stream": [await executor_stream() for _ in range(n)],
            "executor-run": [await executor_stream(inline_fuel=INLINE_FUEL) for _ in range(n)],
        }
        # Interleave a second pass so drift (CPU frequency, other load) hits every variant alike.
        variants["bare-host"] += timed(bare_host(sandbox, module, data, limits), n)
        variants["executor-inline"] += [await executor_inline() for _ in range(n)]
        base = stats(variants["bare-host"])[0]
        for variant, samples in variants.items():
            p50, p95 = stats(samples)
            rows.append((name, variant, len(samples), p50, p95, p50 - base, 100 * (p50 - base) / base))
    print("| workload | variant | runs | p50 µs | p95 µs | p50 vs bare-host µs | vs bare-host % |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, variant, n, p50, p95, delta, pct in rows:
        print(f"| {name} | {variant} | {n} | {p50:.0f} | {p95:.0f} | {delta:+.0f} | {pct:+.1f} |")
    service.pool.close()
    sandbox.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--sieve-runs", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.sieve_runs))
