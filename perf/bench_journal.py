"""In-process benchmark of the scheduler's RunAgent path on each journal backend.

The real SchedulerService (book, dispatcher, journal) runs N agents with a scripted executor that
answers at once, so what is measured is the scheduler's own work plus its journal: CPU per run of this
process (and of PostgreSQL's backends, read from /proc, with --dsn) and runs/s. No network, no Envoy.

    .venv/bin/python -m perf.bench_journal --runs 3000                 # SQLite (embedded default)
    .venv/bin/python -m perf.bench_journal --runs 3000 --dsn postgresql://...   # PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from services.scheduler.domain import CreateSpec, RunFinished, RunOutcome, TemplateInfo
from services.scheduler.ports import Accepted, Ended, ExecutorEvent, Output, RunSpec, Started
from services.scheduler.service import SchedulerService, ServiceSettings

ECHO = TemplateInfo("echo", "1.0.0", retryable=False, timeout_ms=5000)


class _Templates:
    async def resolve(self, name: str, version: str, timeout: float) -> TemplateInfo:
        return ECHO


class _Run:
    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec

    async def events(self) -> AsyncIterator[ExecutorEvent]:
        yield Accepted("bench")
        yield Started()
        yield Output(self.spec.input)
        yield RunFinished(RunOutcome.SUCCEEDED, exit_code=0, fuel_used=1)
        yield Ended("OK")

    def cancel(self) -> None:
        pass


class _Executors:
    @property
    def addresses(self) -> Sequence[str]:
        return ["bench"]

    def start(self, address: str, spec: RunSpec, timeout: float) -> _Run:
        return _Run(spec)

    async def close(self) -> None:
        pass


def _postgres_cpu() -> float:
    """CPU seconds of every postgres process we may read (the server's backends and writers)."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/comm") as f:
                if not f.read().startswith("postgres"):
                    continue
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


async def bench(runs: int, concurrency: int, dsn: str | None, request_ids: bool) -> dict[str, float]:
    if dsn:
        from services.scheduler.journal_pg import PgJournal

        journal = await PgJournal.open(dsn, owner=f"bench-{uuid.uuid4().hex[:8]}")
    else:
        from services.scheduler.journal import Journal

        journal = Journal.open(Path(tempfile.mkdtemp(prefix="bench-journal-")))
    service = SchedulerService(journal, _Templates(), _Executors(), ServiceSettings())  # type: ignore[arg-type]
    await service.start()
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        spec = CreateSpec("echo", input=b"x" * 64, request_id=uuid.uuid4().hex if request_ids else "")
        async with sem:
            async for _ in service.run(spec, 30.0, result_only=True):
                pass

    await asyncio.gather(*(one(i) for i in range(min(200, runs))))  # warm-up
    cpu0, pg0, wall0 = time.process_time(), _postgres_cpu(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(runs)))
    cpu, pg, wall = time.process_time() - cpu0, _postgres_cpu() - pg0, time.perf_counter() - wall0
    await service.stop(1.0)
    closed = journal.close()
    if asyncio.iscoroutine(closed):
        await closed
    return {
        "runs_per_s": runs / wall,
        "scheduler_cpu_ms_per_run": cpu / runs * 1000,
        "postgres_cpu_ms_per_run": pg / runs * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--dsn", default=None, help="PostgreSQL DSN; SQLite in a temp dir when absent")
    parser.add_argument("--request-ids", action="store_true", help="give every run a request_id (idempotent)")
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(bench(args.runs, args.concurrency, args.dsn, args.request_ids))
    backend = "postgres" if args.dsn else "sqlite"
    print(backend, " ".join(f"{k}={v:.3f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
