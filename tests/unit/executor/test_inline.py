"""The executor's inline fast path: pure runs under the fuel budget stay on the event loop's thread; a
run that outgrows the budget is redone through the pool with its real limits; tools never go inline."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.common.errors import ResourceExhausted
from services.executor.events import Finished, LimitKind, Outcome, RunEvent
from services.executor.kvstore import KvStore
from services.executor.modules import ModuleCache
from services.executor.pool import WorkerPool
from services.executor.sandbox import Sandbox
from services.executor.service import ExecutorService, RunCommand
from services.executor.trust import Trust
from services.templates.manifest import Limits, Manifest
from services.templates.policy import Policy
from services.templates.published import PublishedTemplate
from tests.unit.executor.conftest import wasm_file
from tests.unit.executor.signed import first_key, signed

BUDGET = 20_000


class Source:
    """The registry as the executor sees it, in memory: signed templates over the example modules."""

    def __init__(self) -> None:
        self.templates: dict[tuple[str, str], PublishedTemplate] = {}
        self.modules: dict[str, bytes] = {}

    def add(self, name: str, module: str, fuel: int = 10**9, tools: tuple[str, ...] = ()) -> None:
        wasm = wasm_file(module)
        digest = hashlib.sha256(wasm).hexdigest()
        self.modules[digest] = wasm
        limits = Limits(fuel=fuel, memory_bytes=16 << 20, timeout_ms=5000, max_output_bytes=65536, max_tool_calls=10)
        manifest = Manifest(name=name, version="1.0.0", limits=limits, module_sha256=digest, tools=tools)
        self.templates[(name, "1.0.0")] = signed(manifest, len(wasm), 1)

    async def get_template(self, name: str, version: str) -> PublishedTemplate:
        return self.templates[(name, version)]

    async def fetch_module(self, sha256: str, max_bytes: int) -> bytes:
        return self.modules[sha256]

    async def list_published(self) -> list[PublishedTemplate]:
        return list(self.templates.values())

    async def watch(self, after_revision: int) -> AsyncIterator[object]:
        return
        yield


@pytest.fixture
def source() -> Source:
    src = Source()
    src.add("echo-upper", "echo-upper")
    src.add("tiny-fuel", "echo-upper", fuel=1000)  # its own limit (the policy minimum) is below the budget
    src.add("prime-sieve", "prime-sieve")
    src.add("kv-counter", "kv-counter", tools=("kv", "clock", "log", "http_get"))
    return src


@pytest.fixture
def service(source: Source, sandbox: Sandbox, tmp_path: Path) -> Iterator[ExecutorService]:
    policy = Policy.load()
    svc = ExecutorService(
        "executor-test",
        source,  # type: ignore[arg-type]
        Trust(first_key, policy),
        ModuleCache(sandbox, tmp_path, 16, policy.max_module_bytes, policy.max_module_imports),
        sandbox,
        WorkerPool(0, 2, 4),
        KvStore(tmp_path / "kv.sqlite3"),
        policy,
        inline_fuel=BUDGET,
    )
    yield svc
    svc.pool.close()


def inline_count(result: str) -> float:
    return REGISTRY.get_sample_value("agentfactory_executor_inline_runs_total", {"result": result}) or 0.0


async def run(service: ExecutorService, name: str, data: bytes) -> list[RunEvent]:
    await service.trust.refresh()
    events: list[RunEvent] = []
    async for batch in service.run(RunCommand("agent-1", name, "1.0.0", data)):
        events.extend(batch)
    return events


def kinds(events: list[RunEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


async def test_a_small_pure_run_stays_on_the_event_loop_thread(service: ExecutorService) -> None:
    before = inline_count("inline")
    events = await run(service, "echo-upper", b"hello")
    assert kinds(events) == ["Accepted", "Started", "Output", "Finished"]
    assert events[2].data == b"HELLO"  # type: ignore[union-attr]
    assert inline_count("inline") == before + 1
    assert service.pool.capacity().workers == 0  # no worker thread was ever needed


async def test_a_run_over_the_budget_is_redone_in_the_pool_with_its_real_limits(service: ExecutorService) -> None:
    inline, outgrown = inline_count("inline"), inline_count("outgrown")
    events = await run(service, "prime-sieve", b'{"n": 20000}')
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.outcome is Outcome.SUCCEEDED, finished
    assert finished.fuel_used > BUDGET
    assert kinds(events)[:2] == ["Accepted", "Started"] and kinds(events).count("Started") == 1  # nothing doubled
    assert inline_count("outgrown") == outgrown + 1 and inline_count("inline") == inline
    assert service.pool.capacity().workers >= 1
    # The template now goes straight to the pool: no second wasted attempt.
    await run(service, "prime-sieve", b'{"n": 20000}')
    assert inline_count("outgrown") == outgrown + 1


async def test_a_real_limit_hit_inline_is_the_answer(service: ExecutorService) -> None:
    outgrown = inline_count("outgrown")
    with pytest.raises(ResourceExhausted):
        await run(service, "tiny-fuel", b"hello" * 2000)
    assert inline_count("outgrown") == outgrown  # its own fuel limit, not the budget: not redone


async def test_runs_with_tools_never_go_inline(service: ExecutorService) -> None:
    inline = inline_count("inline")
    events = await run(service, "kv-counter", b'{"key": "a"}')
    assert isinstance(events[-1], Finished)
    assert inline_count("inline") == inline
    assert service.pool.capacity().workers >= 1


async def test_a_finished_event_carries_the_budgeted_runs_fuel(service: ExecutorService) -> None:
    events = await run(service, "echo-upper", b"x" * 100)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.limit is LimitKind.NONE
    assert 0 < finished.fuel_used < BUDGET
