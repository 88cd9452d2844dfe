"""The journal on real SQLite: durability settings, group commit, idempotent inserts, listing, recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.scheduler import domain
from services.scheduler.domain import AgentState, Cause, CreateSpec, ListFilter, Outcome, PageCursor, TemplateInfo
from services.scheduler.journal import Journal

TEMPLATE = TemplateInfo("echo", "1.0.0", retryable=False, timeout_ms=1000)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path)
    yield j
    j.close()


def agent(i: int, template: str = "echo", labels: dict[str, str] | None = None, request_id: str = "") -> domain.Agent:
    info = dataclasses.replace(TEMPLATE, name=template)
    spec = CreateSpec(template, input=f"input {i}".encode(), labels=labels or {}, request_id=request_id)
    return domain.new_agent(f"agent-{i:04d}", spec, info, now=1_700_000_000.0 + i, deadline=None)


def batches() -> float:
    return REGISTRY.get_sample_value("agentfactory_scheduler_journal_batch_size_count") or 0.0


def test_wal_and_full_sync_are_in_force(journal: Journal) -> None:
    conn = sqlite3.connect(journal.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal._writer_conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()


async def test_create_is_committed_before_it_returns(tmp_path: Path, journal: Journal) -> None:
    stored, created = await journal.create(agent(1, labels={"team": "a"}))
    assert created and stored.seq > 0
    # A separate connection (another process, after a crash) sees it: the commit happened.
    other = sqlite3.connect(tmp_path / "journal.sqlite3")
    assert other.execute("SELECT id, state FROM agents").fetchall() == [("agent-0001", AgentState.PENDING)]
    other.close()
    back = await journal.get("agent-0001")
    assert back == stored


async def test_group_commit_batches_concurrent_creates(journal: Journal) -> None:
    before = batches()
    results = await asyncio.gather(*(journal.create(agent(i)) for i in range(300)))
    assert all(created for _, created in results)
    assert await journal.count() == 300
    used = batches() - before
    # 300 concurrent creates share far fewer transactions (each one fsync) than one per create.
    assert 1 <= used < 100, used
    seqs = [a.seq for a, _ in results]
    assert len(set(seqs)) == 300


async def test_duplicate_request_id_returns_the_first_agent(journal: Journal) -> None:
    first, second = await asyncio.gather(
        journal.create(agent(1, request_id="req-1")), journal.create(agent(2, request_id="req-1"))
    )
    assert first[1] is True and second[1] is False
    assert second[0].id == first[0].id == "agent-0001"
    assert (await journal.get_by_request_id("req-1")).id == "agent-0001"
    assert await journal.count() == 1


async def test_one_failing_op_does_not_undo_its_batch(journal: Journal) -> None:
    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO agents (id) VALUES ('half-written')")  # violates NOT NULL
        raise AssertionError("unreachable")

    results = await asyncio.gather(
        journal.create(agent(1)), journal.submit(boom), journal.create(agent(2)), return_exceptions=True
    )
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert await journal.get("agent-0001") and await journal.get("agent-0002")
    assert await journal.count() == 2


async def test_updates_survive_reopen_and_feed_recovery(tmp_path: Path) -> None:
    j = Journal.open(tmp_path)
    a1, _ = await j.create(agent(1))
    a2, _ = await j.create(agent(2))
    a3, _ = await j.create(agent(3))
    running = domain.mark_running(domain.mark_dispatching(a2), "ex-1", 1_700_000_100.5)
    await j.update(running)
    done = domain.finish(
        domain.mark_running(a3, "ex-1", 1.0), Outcome(AgentState.SUCCEEDED, "ok", Cause.SUCCEEDED), 2.0, b"out"
    )
    await j.update(done)
    j.close()

    reopened = Journal.open(tmp_path)
    try:
        unfinished = await reopened.unfinished()
        assert [a.id for a in unfinished] == [a1.id, a2.id]  # oldest first; the SUCCEEDED one is done
        assert unfinished[1] == running
        assert await reopened.get(a3.id) == done
    finally:
        reopened.close()


async def test_update_of_unknown_agent_fails(journal: Journal) -> None:
    with pytest.raises(KeyError):
        await journal.update(agent(9))


async def test_list_filters_and_pages_newest_first(journal: Journal) -> None:
    for i in range(12):
        labels = {"team": "a" if i % 2 else "b", "env": "prod"}
        await journal.create(agent(i, template="echo" if i < 8 else "other", labels=labels))
    page = await journal.list(ListFilter(), None, 5)
    assert [a.id for a in page] == [f"agent-{i:04d}" for i in (11, 10, 9, 8, 7)]
    after = await journal.list(ListFilter(), PageCursor.of(page[-1].create_time, page[-1].id), 5)
    assert [a.id for a in after] == [f"agent-{i:04d}" for i in (6, 5, 4, 3, 2)]
    by_template = await journal.list(ListFilter(template_name="other"), None, 50)
    assert [a.id for a in by_template] == [f"agent-{i:04d}" for i in (11, 10, 9, 8)]
    by_labels = await journal.list(ListFilter(labels=(("env", "prod"), ("team", "a"))), None, 50)
    assert [a.id for a in by_labels] == [f"agent-{i:04d}" for i in (11, 9, 7, 5, 3, 1)]
    assert await journal.list(ListFilter(state=AgentState.RUNNING), None, 50) == []
    assert len(await journal.list(ListFilter(state=AgentState.PENDING), None, 50)) == 12


async def test_agents_created_in_the_same_microsecond_page_by_id(journal: Journal) -> None:
    same = [dataclasses.replace(agent(0), id=f"agent-same-{c}") for c in "bca"]
    for a in same:
        await journal.create(a)
    first = await journal.list(ListFilter(), None, 2)
    assert [a.id for a in first] == ["agent-same-c", "agent-same-b"]
    rest = await journal.list(ListFilter(), PageCursor.of(first[-1].create_time, first[-1].id), 2)
    assert [a.id for a in rest] == ["agent-same-a"]


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "journal.sqlite3")
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this scheduler"):
        Journal.open(tmp_path)


async def test_a_caller_that_goes_away_does_not_kill_the_writer(journal: Journal) -> None:
    tasks = [asyncio.ensure_future(journal.create(agent(i))) for i in range(50)]
    await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Cancelled callers' writes may or may not have landed; the writer must keep serving either way.
    stored, created = await journal.create(agent(999))
    assert created and await journal.get(stored.id) == stored
