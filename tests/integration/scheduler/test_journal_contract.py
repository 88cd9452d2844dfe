"""One contract, two adapters: every test here runs against the SQLite journal (embedded default) and
the PostgreSQL journal (a real server started by tests/postgres.py). What only a shared journal has
(leases, fences, replicas) is in test_journal_pg.py."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from services.scheduler import domain
from services.scheduler.domain import AgentState, Cause, CreateSpec, ListFilter, Outcome, PageCursor, TemplateInfo
from services.scheduler.journal import Journal
from services.scheduler.journal_pg import PgJournal
from services.scheduler.ports import AgentJournal
from tests.postgres import pg_dsn, postgres_server  # noqa: F401 — fixtures

TEMPLATE = TemplateInfo("echo", "1.0.0", retryable=False, timeout_ms=1000)
LEASE = 0.3  # PostgreSQL: a closed journal's agents are orphans this long after its last renewal

Reopen = Callable[[], Awaitable[AgentJournal]]


def agent(i: int, template: str = "echo", labels: dict[str, str] | None = None, request_id: str = "") -> domain.Agent:
    info = dataclasses.replace(TEMPLATE, name=template)
    spec = CreateSpec(template, input=f"input {i}".encode(), labels=labels or {}, request_id=request_id)
    return domain.new_agent(f"agent-{i:04d}", spec, info, now=1_700_000_000.0 + i, deadline=None)


def same(a: domain.Agent, b: domain.Agent) -> bool:
    """Equal as journaled: seq and fence are the journal's own bookkeeping."""
    return dataclasses.replace(a, seq=0, fence=0) == dataclasses.replace(b, seq=0, fence=0)


async def _close(journal: AgentJournal) -> None:
    closed = journal.close()  # type: ignore[attr-defined]
    if asyncio.iscoroutine(closed):
        await closed


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[AgentJournal, Reopen]]:
    """A journal, and a way to open the same journal again as a new process would."""
    opened: list[AgentJournal] = []

    async def open_one() -> AgentJournal:
        if request.param == "sqlite":
            journal: AgentJournal = Journal.open(tmp_path / "journal")
        else:
            dsn = request.getfixturevalue("pg_dsn")
            journal = await PgJournal.open(dsn, owner=f"replica-{uuid.uuid4().hex[:8]}", lease_seconds=LEASE)
        opened.append(journal)
        return journal

    first = await open_one()

    async def reopen() -> AgentJournal:
        await _close(first)
        return await open_one()

    yield first, reopen
    for journal in opened:
        await _close(journal)


async def test_create_then_read_back(backend: tuple[AgentJournal, Reopen]) -> None:
    journal, _ = backend
    new = agent(1, labels={"team": "a", "env": "prod"}, request_id="req-1")
    stored, created = await journal.create(new)
    assert created and stored.seq > 0 and same(stored, new)
    assert same(await journal.get(new.id), new)  # type: ignore[arg-type]
    assert same(await journal.get_by_request_id("req-1"), new)  # type: ignore[arg-type]
    assert await journal.get("nope") is None and await journal.get_by_request_id("nope") is None
    assert await journal.count() == 1


async def test_a_repeated_request_id_returns_the_first_agent(backend: tuple[AgentJournal, Reopen]) -> None:
    journal, _ = backend
    first, created = await journal.create(agent(1, request_id="req-1"))
    again, created_again = await journal.create(agent(2, request_id="req-1"))
    assert created and not created_again and again.id == first.id
    results = await asyncio.gather(*(journal.create(agent(10 + i, request_id="req-2")) for i in range(20)))
    assert sum(created for _, created in results) == 1  # concurrent: exactly one wins
    assert len({stored.id for stored, _ in results}) == 1
    assert await journal.count() == 2


async def test_agents_without_request_id_never_collide(backend: tuple[AgentJournal, Reopen]) -> None:
    journal, _ = backend
    results = await asyncio.gather(*(journal.create(agent(i)) for i in range(50)))
    assert all(created for _, created in results)
    assert await journal.count() == 50


async def test_update_is_durable_and_unknown_agents_fail(backend: tuple[AgentJournal, Reopen]) -> None:
    journal, reopen = backend
    stored, _ = await journal.create(agent(1))
    running = domain.mark_running(domain.mark_dispatching(stored), "ex-1", 1.0)
    await journal.update(running)
    done = domain.finish(running, Outcome(AgentState.SUCCEEDED, "exit 0", Cause.SUCCEEDED, "OK"), 2.0, b"out", False)
    await journal.update(done)
    with pytest.raises(KeyError):
        await journal.update(dataclasses.replace(done, id="agent-missing"))
    journal = await reopen()
    back = await journal.get(stored.id)
    assert back is not None and same(back, done) and back.output == b"out"


async def test_listing_filters_and_pages_newest_first(backend: tuple[AgentJournal, Reopen]) -> None:
    journal, _ = backend
    for i in range(12):
        labels = {"env": "prod", "team": "a"} if i % 3 == 0 else {"env": "dev"}
        await journal.create(agent(i, template="other" if i % 4 == 0 else "echo", labels=labels))
    page = await journal.list(ListFilter(), None, 5)
    assert [a.id for a in page] == [f"agent-{i:04d}" for i in range(11, 6, -1)]
    after = await journal.list(ListFilter(), PageCursor.of(page[-1].create_time, page[-1].id), 5)
    assert [a.id for a in after] == [f"agent-{i:04d}" for i in range(6, 1, -1)]
    by_template = await journal.list(ListFilter(template_name="other"), None, 50)
    assert [a.id for a in by_template] == ["agent-0008", "agent-0004", "agent-0000"]
    by_labels = await journal.list(ListFilter(labels=(("env", "prod"), ("team", "a"))), None, 50)
    assert [a.id for a in by_labels] == ["agent-0009", "agent-0006", "agent-0003", "agent-0000"]
    assert await journal.list(ListFilter(labels=(("it's", 'a "key"'),)), None, 50) == []  # quoted, not SQL
    assert await journal.list(ListFilter(state=AgentState.RUNNING), None, 50) == []
    assert len(await journal.list(ListFilter(state=AgentState.PENDING), None, 50)) == 12


async def test_listing_by_creation_time_window(backend: tuple[AgentJournal, Reopen]) -> None:
    """created_after <= creation < created_before, alone and with a label, paged the same way."""
    journal, _ = backend
    for i in range(10):
        await journal.create(agent(i, labels={"env": "prod"} if i % 2 == 0 else {}))
    t = int(agent(0).create_time * 1_000_000)  # agent i is created i seconds after agent 0
    window = ListFilter(created_after_us=t + 3_000_000, created_before_us=t + 7_000_000)
    assert [a.id for a in await journal.list(window, None, 50)] == [f"agent-{i:04d}" for i in (6, 5, 4, 3)]
    page = await journal.list(window, None, 2)
    rest = await journal.list(window, PageCursor.of(page[-1].create_time, page[-1].id), 2)
    assert [a.id for a in page + rest] == [f"agent-{i:04d}" for i in (6, 5, 4, 3)]
    labelled = dataclasses.replace(window, labels=(("env", "prod"),))
    assert [a.id for a in await journal.list(labelled, None, 50)] == ["agent-0006", "agent-0004"]
    assert await journal.list(ListFilter(created_before_us=t), None, 50) == []


async def test_same_microsecond_pages_by_id(backend: tuple[AgentJournal, Reopen]) -> None:
    journal, _ = backend
    for suffix in "abc":
        await journal.create(dataclasses.replace(agent(1), id=f"agent-{suffix}"))
    first = await journal.list(ListFilter(), None, 2)
    rest = await journal.list(ListFilter(), PageCursor.of(first[-1].create_time, first[-1].id), 2)
    assert [a.id for a in first + rest] == ["agent-c", "agent-b", "agent-a"]


async def test_unfinished_agents_are_taken_over_once_after_their_process_is_gone(
    backend: tuple[AgentJournal, Reopen],
) -> None:
    journal, reopen = backend
    a1, _ = await journal.create(agent(1))
    a2, _ = await journal.create(agent(2))
    a3, _ = await journal.create(agent(3))
    await journal.update(
        domain.finish(a3, Outcome(AgentState.FAILED, "x", Cause.INTERNAL, "INTERNAL"), 1.0, b"", False)
    )
    assert [a.id for a in await journal.unfinished()] == [a1.id, a2.id]  # oldest first; the FAILED one is done
    successor = await reopen()
    taken: list[domain.Agent] = []
    for _ in range(200):  # PostgreSQL: until the leases of the closed journal expire
        # Each agent's lease was last renewed at its own moment: on a loaded machine they may expire
        # (and be taken) in two rounds.
        taken += await successor.take_over()
        if len(taken) >= 2:
            break
        await asyncio.sleep(LEASE / 4)
    assert sorted(a.id for a in taken) == [a1.id, a2.id]
    taken.sort(key=lambda a: a.id)
    assert await successor.take_over() == []  # each agent once
    running = domain.mark_dispatching(taken[0])
    await successor.update(running)  # the taker may write (its fence is current)
    assert (await successor.get(a1.id)).in_flight  # type: ignore[union-attr]


# --- retention primitives (services/scheduler/retention.py, issue 15) ------------------------------

DONE = Outcome(AgentState.SUCCEEDED, "exit 0", Cause.SUCCEEDED, "OK")


async def _finished(journal: AgentJournal, i: int, at: float, **kw: object) -> domain.Agent:
    stored, _ = await journal.create(agent(i, **kw))  # type: ignore[arg-type]
    done = domain.finish(domain.mark_running(domain.mark_dispatching(stored), "ex", at - 1), DONE, at, b"o")
    await journal.update(done)
    return done


async def test_retention_finds_deletes_and_remembers_finished_agents_only(
    backend: tuple[AgentJournal, Reopen],
) -> None:
    journal, _ = backend
    old = [await _finished(journal, i, at=1_000.0 + i, labels={"team": "a"}) for i in range(3)]
    recent = await _finished(journal, 10, at=5_000.0)
    unfinished, _ = await journal.create(agent(11))
    cutoff = 2_000 * 1_000_000
    by_age = await journal.expired_ids(cutoff, None, 100)  # type: ignore[attr-defined]
    assert by_age == [(a.id, "age") for a in old]  # oldest finish first; never the unfinished one
    by_count = await journal.expired_ids(None, 1, 100)  # type: ignore[attr-defined]
    assert {agent_id for agent_id, _ in by_count} == {a.id for a in old}  # the newest finished is kept
    assert await journal.expired_ids(cutoff, None, 2) == by_age[:2]  # type: ignore[attr-defined]

    gone = await journal.delete_expired([*(a.id for a in old), unfinished.id], 9_000_000)  # type: ignore[attr-defined]
    assert gone == 3  # the unfinished agent is refused even when named
    assert await journal.get(old[0].id) is None and await journal.get(unfinished.id) is not None
    assert await journal.list(ListFilter(labels=(("team", "a"),)), None, 50) == []  # its labels went too
    assert await journal.expired_at(old[0].id) == 9_000_000  # type: ignore[attr-defined]
    assert await journal.expired_at(recent.id) is None  # type: ignore[attr-defined]
    assert await journal.tombstone_cutoff(1) == 9_000_000  # type: ignore[attr-defined]
    assert await journal.tombstone_cutoff(3) is None  # type: ignore[attr-defined]
    assert await journal.prune_tombstones(9_000_001, 2) == 2  # type: ignore[attr-defined]
    assert await journal.prune_tombstones(9_000_001, 2) == 1  # type: ignore[attr-defined]
    assert await journal.expired_at(old[0].id) is None  # type: ignore[attr-defined]


async def test_both_adapters_carry_the_retention_port(backend: tuple[AgentJournal, Reopen]) -> None:
    from services.scheduler.retention import RetentionJournal

    journal, _ = backend
    assert isinstance(journal, RetentionJournal)  # so SchedulerService runs retention on either
