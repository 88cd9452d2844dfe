"""The curves of issue 15, each point measured on real components; every function returns rows of
(point, {measure: value}). Start-up, memory and watchers run real processes; listings and the journal's
size run the real SQLite journal in this process; module sizes compile with the executor's sandbox."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import grpc.aio
import wasmtime

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from agentfactory.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from perf.scale import stack
from services.executor.sandbox import EngineSettings, Sandbox
from services.scheduler import domain
from services.scheduler.domain import AgentState, Cause, CreateSpec, ListFilter, Outcome, PageCursor, TemplateInfo
from services.scheduler.journal import _INSERT_SQL, _LABELS_SQL, Journal, _mutable_values, us
from services.scheduler.retention import Retention, RetentionPolicy
from tests.harness import REPO, ServiceProcess, free_port

Row = tuple[int, dict[str, float]]
EXECUTOR = "agentfactory.executor.v1.ExecutorService"
SCHEDULER = "agentfactory.scheduler.v1.SchedulerService"
T0 = 1_700_000_000.0
DONE = Outcome(AgentState.SUCCEEDED, "exit 0", Cause.SUCCEEDED)


def _median_ms(fn: Callable[[], object], runs: int, pause: float = 0.0) -> float:
    """Median latency of `fn`, after three warm-up calls; `pause` seconds between calls lets what a call
    set off (a fan-out to every watcher) finish, so each call is measured alone, not at saturation."""
    for _ in range(3):  # warm caches (page cache, statement cache) before timing
        fn()
        time.sleep(pause)
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
        time.sleep(pause)
    return statistics.median(samples)


def _metric(addr: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rpartition(" ")[2])
    return 0.0


# --- executor start-up and memory against the catalog -----------------------------------------------


def executor_startup(points: list[int], work: Path) -> list[Row]:
    """Per catalog size: seconds to SERVING (cold data dir), seconds until the background warm-up ended,
    and the executor's RSS once it did (the memory budget, not the catalog, bounds it)."""
    rows: list[Row] = []
    signer = ServiceProcess("signer", work, {"AF_SIGNER_BACKEND": "local"})
    with signer, ServiceProcess("registry", work, {"AF_SIGNER_ADDR": signer.addr}) as registry:
        # One unmeasured start first: the first process to import wasmtime and grpc pays for a cold page
        # cache, which would inflate the smallest point and hide the curve's shape.
        env = {"AF_REGISTRY_ADDR": registry.addr, "AF_SIGNER_ADDR": signer.addr, "AF_DATA_DIR": str(work / "cold")}
        cold = ServiceProcess("executor", work, env)
        stack.start_timed(cold, EXECUTOR)
        cold.stop()
        published = 0
        for n in points:
            stack.publish_many(registry.addr, published, n)
            published = n
            starts: list[tuple[float, float, float]] = []
            for attempt in range(3):  # the median of three cold starts: one start is at the box's mercy
                metrics = f"127.0.0.1:{free_port()}"
                env = {
                    "AF_REGISTRY_ADDR": registry.addr,
                    "AF_SIGNER_ADDR": signer.addr,
                    "AF_METRICS_ADDR": metrics,
                    "AF_DATA_DIR": str(work / f"executor-{n}-{attempt}"),
                    "AF_EXECUTOR_MODULE_MEMORY_BYTES": str(32 << 20),
                }
                executor = ServiceProcess("executor", work, env)
                serving = stack.start_timed(executor, EXECUTOR)
                began = time.perf_counter()
                while _metric(metrics, "agentfactory_executor_warmup_done") != 1:
                    time.sleep(0.05)
                starts.append((serving, serving + time.perf_counter() - began, stack.rss_bytes(executor) / 2**20))
                executor.stop()
            serving, warm, rss = (statistics.median(column) for column in zip(*starts, strict=True))
            rows.append((n, {"serving_s": serving, "warmup_done_s": warm, "rss_mb": rss}))
    return rows


# --- listings against the agents in the journal -------------------------------------------------------


def _bulk_agents(journal: Journal, start: int, stop: int) -> None:
    """Agents start..stop straight into the journal's tables (the same SQL as Journal.create): ten
    templates, twenty teams, one in a hundred still RUNNING, the rest SUCCEEDED."""
    rows, labels = [], []
    for i in range(start, stop):
        info = TemplateInfo(f"t{i % 10}", "1.0.0", retryable=False, timeout_ms=1000)
        spec = CreateSpec(info.name, input=b"x", labels={"team": f"team{i % 20}"})
        agent = domain.new_agent(f"agent-{i:08d}", spec, info, now=T0 + i / 1000, deadline=None)
        if i % 100:
            agent = dataclasses.replace(agent, state=AgentState.SUCCEEDED, finish_time=T0 + i / 1000)
        else:
            agent = dataclasses.replace(agent, state=AgentState.RUNNING)
        rows.append((agent.id, None, agent.template_name, agent.template_version, agent.requested_version,
                     agent.input, json.dumps(dict(agent.labels)), 0, agent.timeout_ms, *_mutable_values(agent),
                     None, us(agent.create_time)))  # fmt: skip
        labels.append((agent.id, "team", agent.labels["team"], us(agent.create_time)))
    conn = journal._writer_conn
    conn.execute("BEGIN")
    conn.executemany(_INSERT_SQL, rows)
    conn.executemany(_LABELS_SQL, labels)
    conn.execute("COMMIT")


def listings(points: list[int], work: Path) -> list[Row]:
    """Per journal size: median ms of one ListAgents page (50 agents) for each filter, first and deep."""
    journal = Journal.open(work / "listing", "NORMAL")
    loop = asyncio.new_event_loop()
    rows: list[Row] = []
    try:
        filled = 0
        for n in points:
            for start in range(filled, n, 50_000):
                _bulk_agents(journal, start, min(n, start + 50_000))
            filled = n
            middle = PageCursor(round((T0 + n / 2000) * 1e6), "agent-~")

            def page(flt: ListFilter, after: PageCursor | None = None) -> Callable[[], object]:
                return lambda: loop.run_until_complete(journal.list(flt, after, 51))

            window = ListFilter(created_after_us=round((T0 + n / 4000) * 1e6), created_before_us=middle.create_us)
            cases = {
                "all_first": page(ListFilter()),
                "state_running_first": page(ListFilter(state=AgentState.RUNNING)),
                "state_succeeded_deep": page(ListFilter(state=AgentState.SUCCEEDED), middle),
                "template_deep": page(ListFilter(template_name="t3"), middle),
                "label_deep": page(ListFilter(labels=(("team", "team7"),)), middle),
                "label_no_match": page(ListFilter(labels=(("team", "nobody"),))),
                "created_window": page(window),
            }
            rows.append((n, {f"{name}_ms": _median_ms(fn, 30) for name, fn in cases.items()}))
    finally:
        journal.close()
        loop.close()
    return rows


# --- the journal's size under a constant load with retention -----------------------------------------


def journal_size(points: list[int], work: Path) -> list[Row]:
    """Agents created, run and finished through the journal's own writes, retention keeping the newest
    2,000 finished per template (count rule) and 5,000 tombstones: the files' size after each total."""
    path = work / "constant-load"
    journal = Journal.open(path, "NORMAL")
    policy = RetentionPolicy(max_age_seconds=None, keep_per_template=2_000, max_tombstones=5_000, batch=500)
    retention = Retention(journal, policy)
    info = TemplateInfo("echo", "1.0.0", retryable=False, timeout_ms=1000)
    rows: list[Row] = []

    async def one(i: int) -> None:
        agent = domain.new_agent(f"agent-{i:08d}", CreateSpec("echo", input=b"x" * 64), info, time.time(), None)
        stored, _ = await journal.create(agent)
        running = dataclasses.replace(stored, state=AgentState.RUNNING)
        await journal.update(running)
        await journal.update(domain.finish(running, DONE, time.time(), b"y" * 256))

    async def drive() -> None:
        done = 0
        for n in points:
            while done < n:
                batch = min(1000, n - done)
                await asyncio.gather(*(one(done + k) for k in range(batch)))
                done += batch
                await retention.run_once()
            db = (path / "journal.sqlite3").stat().st_size
            wal = sum(p.stat().st_size for p in path.glob("journal.sqlite3-wal"))
            row = {"journal_mb": (db + wal) / 2**20, "db_mb": db / 2**20, "wal_mb": wal / 2**20}
            rows.append((n, {**row, "agents_kept": float(await journal.count())}))

    try:
        asyncio.run(drive())
    finally:
        journal.close()
    return rows


# --- publish and cancel latency against the number of watchers ------------------------------------------


class _Watchers:
    """`count` watch streams held open and read by a process of their own (perf/scale/watchers.py)."""

    def __init__(self, kind: str, addr: str, count: int, agent_id: str = "") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "perf.scale.watchers", kind, addr, str(count), agent_id],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the watchers process did not open its streams")
        time.sleep(0.5)  # every stream subscribed on the server side too

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(TIMEOUT_WATCH)


TIMEOUT_WATCH = 60.0


def publish_with_watchers(points: list[int], work: Path) -> list[Row]:
    """Median ms of a PublishTemplate while `n` WatchTemplates streams are open and reading."""
    rows: list[Row] = []
    signer = ServiceProcess("signer", work, {"AF_SIGNER_BACKEND": "local"})
    with signer, ServiceProcess("registry", work, {"AF_SIGNER_ADDR": signer.addr}) as registry:
        seq = 0
        with grpc.insecure_channel(registry.addr) as channel:
            for n in points:
                watchers = _Watchers("templates", registry.addr, n)

                def one() -> None:
                    nonlocal seq
                    seq += 1
                    stack.publish(channel, stack.manifest(f"watched-{seq:05d}"), stack.small_module(100_000 + seq))

                rows.append((n, {"publish_ms": _median_ms(one, 15, pause=0.3 + n / 1000)}))
                watchers.close()
    return rows


def cancel_with_watchers(points: list[int], work: Path) -> list[Row]:
    """Median ms of a CancelAgent while `n` WatchAgent streams of that agent are open and reading."""
    rows: list[Row] = []
    signer = ServiceProcess("signer", work, {"AF_SIGNER_BACKEND": "local"})
    with signer, ServiceProcess("registry", work, {"AF_SIGNER_ADDR": signer.addr}) as registry:
        with grpc.insecure_channel(registry.addr) as channel:
            spin = stack.manifest("scale-spin", fuel=20_000_000_000, timeout_ms=30_000)
            stack.publish(channel, spin, bytes(wasmtime.wat2wasm(stack.SPIN_WAT)))
        env = {"AF_REGISTRY_ADDR": registry.addr, "AF_SIGNER_ADDR": signer.addr}
        executor = ServiceProcess("executor", work, env)
        stack.start_timed(executor, EXECUTOR)
        sched = ServiceProcess(
            "scheduler", work, {"AF_REGISTRY_ADDR": registry.addr, "AF_EXECUTOR_ADDRS": executor.addr}
        )
        stack.start_timed(sched, SCHEDULER)
        try:
            with grpc.insecure_channel(sched.addr) as sch:
                stub = pb_grpc.SchedulerServiceStub(sch)
                for n in points:
                    samples = []
                    for _ in range(5):
                        agent = stub.CreateAgent(pb.CreateAgentRequest(template_name="scale-spin"), timeout=10).agent
                        while stub.GetAgent(pb.GetAgentRequest(id=agent.id), timeout=10).agent.state != 2:
                            time.sleep(0.02)
                        watchers = _Watchers("agent", sched.addr, n, agent.id)
                        began = time.perf_counter()
                        stub.CancelAgent(pb.CancelAgentRequest(id=agent.id), timeout=30)
                        samples.append((time.perf_counter() - began) * 1000)
                        watchers.close()
                    rows.append((n, {"cancel_ms": statistics.median(samples)}))
        finally:
            sched.stop()
            executor.stop()
    return rows


# --- compiled module memory against module size ---------------------------------------------------------


def _code_module(target_bytes: int) -> bytes:
    """A valid module of about `target_bytes`, nearly all of it code: functions of ~1.8 KiB of arithmetic."""
    body = "(i32.const 1) " + "(i32.const 3) (i32.add) " * 600 + "(drop)"
    count = max(1, target_bytes // 1810)
    funcs = " ".join(f"(func $f{i} {body})" for i in range(count))
    return bytes(wasmtime.wat2wasm(f'(module (memory (export "memory") 1) {funcs} (func (export "_start")))'))


def module_sizes(points: list[int], work: Path) -> list[Row]:
    """Per module size (bytes of wasm): compile seconds and the compiled module's bytes (serialized: what
    the executor's cache counts against its budget), each per KiB of wasm so flat means linear cost."""
    sandbox = Sandbox(EngineSettings(epoch_tick_ms=10, memory_reservation=64 << 20))
    rows: list[Row] = []
    try:
        for size in points:
            wasm = _code_module(size)
            began = time.perf_counter()
            module = sandbox.compile(wasm)
            compile_s = time.perf_counter() - began
            compiled = len(module.serialize())
            kib = len(wasm) / 1024
            rows.append(
                (
                    size,
                    {
                        "wasm_kib": kib,
                        "compile_s": compile_s,
                        "compiled_kib": compiled / 1024,
                        "compile_ms_per_kib": compile_s * 1000 / kib,
                        "compiled_per_wasm": compiled / len(wasm),
                    },
                )
            )
    finally:
        sandbox.close()
    return rows


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="af-scale-"))
