"""Retention on the real SQLite journal: it deletes the finished agents the policy names and nothing else
(never an unfinished one), leaves a tombstone that GetAgent reports as expired, prunes tombstones; and the
listings' indexes: every filter walks an index in page order, keyset pages cover each match once."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.errors import InvalidArgument, NotFound
from services.scheduler import domain
from services.scheduler.domain import (
    AgentState,
    Cause,
    CreateSpec,
    ListFilter,
    Outcome,
    Page,
    PageCursor,
    TemplateInfo,
    list_query,
)
from services.scheduler.journal import Journal
from services.scheduler.retention import Retention, RetentionJournal, RetentionPolicy
from services.scheduler.service import Expired, SchedulerService, ServiceSettings
from tests.unit.scheduler import doubles

T0 = 1_700_000_000.0
DAY = 86400.0
DONE = Outcome(AgentState.SUCCEEDED, "exit 0", Cause.SUCCEEDED)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path)
    yield j
    j.close()


def agent(i: int, template: str = "echo", labels: dict[str, str] | None = None) -> domain.Agent:
    info = TemplateInfo(template, "1.0.0", retryable=False, timeout_ms=1000)
    spec = CreateSpec(template, input=b"x", labels=labels or {})
    return domain.new_agent(f"agent-{i:04d}", spec, info, now=T0 + i, deadline=None)


async def add(journal: Journal, i: int, finished_at: float | None, **kw: object) -> domain.Agent:
    stored, _ = await journal.create(agent(i, **kw))  # type: ignore[arg-type]
    if finished_at is not None:
        running = dataclasses.replace(stored, state=AgentState.RUNNING)
        await journal.update(running)
        stored = domain.finish(running, DONE, finished_at, b"out")
        await journal.update(stored)
    return stored


async def ids(journal: Journal) -> set[str]:
    return {a.id for a in await journal.list(ListFilter(), None, 10_000)}


def test_the_sqlite_journal_has_the_retention_primitives(journal: Journal) -> None:
    assert isinstance(journal, RetentionJournal)


async def test_age_rule_deletes_old_finished_agents_only(journal: Journal) -> None:
    now = T0 + 30 * DAY
    old_done = [await add(journal, i, finished_at=T0 + i, labels={"team": "a"}) for i in range(5)]
    recent_done = [await add(journal, 10 + i, finished_at=now - 3600) for i in range(3)]
    old_unfinished = [await add(journal, 20 + i, finished_at=None) for i in range(2)]  # created long ago
    retention = Retention(journal, RetentionPolicy(max_age_seconds=7 * DAY, batch=2))
    assert await retention.run_once(now) == 5
    assert await ids(journal) == {a.id for a in recent_done + old_unfinished}
    assert await journal.list(ListFilter(labels=(("team", "a"),)), None, 100) == []  # label rows went too
    assert [await journal.expired_at(a.id) for a in old_done] == [round(now * 1e6)] * 5
    assert await journal.expired_at(recent_done[0].id) is None
    assert await retention.run_once(now) == 0  # nothing more to do


async def test_count_rule_keeps_the_newest_finished_per_template(journal: Journal) -> None:
    now = T0 + DAY
    echo = [await add(journal, i, finished_at=T0 + 100 + i) for i in range(6)]
    other = [await add(journal, 10 + i, finished_at=T0 + 100 + i, template="other") for i in range(2)]
    running = await add(journal, 30, finished_at=None)
    retention = Retention(journal, RetentionPolicy(max_age_seconds=None, keep_per_template=3, batch=2))
    assert await retention.run_once(now) == 3
    assert await ids(journal) == {a.id for a in echo[3:] + other + [running]}


async def test_tombstones_are_pruned_after_their_own_period(journal: Journal) -> None:
    gone = await add(journal, 1, finished_at=T0)
    policy = RetentionPolicy(max_age_seconds=DAY, tombstone_seconds=10 * DAY)
    retention = Retention(journal, policy)
    await retention.run_once(T0 + 2 * DAY)
    assert await journal.expired_at(gone.id) is not None
    await retention.run_once(T0 + 13 * DAY)
    assert await journal.expired_at(gone.id) is None


async def test_tombstones_are_capped_by_count(journal: Journal) -> None:
    policy = RetentionPolicy(max_age_seconds=DAY, max_tombstones=3)
    retention = Retention(journal, policy)
    first = [await add(journal, i, finished_at=T0) for i in range(4)]
    await retention.run_once(T0 + 2 * DAY)  # four tombstones from one pass: they share a time, all stay
    later = [await add(journal, 10 + i, finished_at=T0 + 2 * DAY) for i in range(3)]
    await retention.run_once(T0 + 4 * DAY)  # three newer ones: the first pass's four are beyond the count
    assert [await journal.expired_at(a.id) for a in first] == [None] * 4
    assert all([await journal.expired_at(a.id) is not None for a in later])


async def test_get_agent_of_an_expired_id_is_not_found_saying_it_expired(journal: Journal) -> None:
    policy = RetentionPolicy(max_age_seconds=7 * DAY)
    service = SchedulerService(
        journal,
        doubles.Templates(),
        doubles.FakeExecutors({"ex-a": doubles.succeed}),
        ServiceSettings(retention=policy),
    )
    gone = await add(journal, 1, finished_at=T0)
    await service.retention.run_once(T0 + 8 * DAY)  # type: ignore[union-attr]
    with pytest.raises(Expired) as expired:
        await service.get(gone.id)
    assert "expired" in expired.value.message and "kept for 7d after they finish" in expired.value.message
    with pytest.raises(NotFound) as missing:
        await service.get("never-existed")
    assert not isinstance(missing.value, Expired) and "expired" not in missing.value.message


# --- listings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flt",
    [
        ListFilter(),
        ListFilter(state=AgentState.SUCCEEDED),
        ListFilter(template_name="other"),
        ListFilter(state=AgentState.PENDING, template_name="echo"),
        ListFilter(labels=(("team", "a"),)),
        ListFilter(labels=(("team", "a"), ("tier", "gold"))),
        ListFilter(state=AgentState.SUCCEEDED, labels=(("team", "b"),)),
        ListFilter(labels=(("team", "nobody"),)),
        ListFilter(created_after_us=round((T0 + 5) * 1e6), created_before_us=round((T0 + 33) * 1e6)),
        ListFilter(state=AgentState.SUCCEEDED, created_after_us=round((T0 + 10) * 1e6)),
        ListFilter(labels=(("team", "a"),), created_before_us=round((T0 + 20) * 1e6)),
    ],
    ids=lambda f: (
        f"{f.state and f.state.name}-{f.template_name}-{len(f.labels)}-{f.created_after_us}-{f.created_before_us}"
    ),
)
async def test_keyset_pages_cover_every_match_once_and_use_an_index(journal: Journal, flt: ListFilter) -> None:
    everyone = []
    for i in range(40):
        labels = {"team": "a" if i % 2 else "b"}
        if i % 3 == 0:
            labels["tier"] = "gold"
        everyone.append(
            await add(
                journal, i, finished_at=T0 + i if i % 4 else None, template="other" if i % 5 == 0 else "echo",
                labels=labels,
            )
        )  # fmt: skip
    expected = sorted((a for a in everyone if flt.matches(a)), key=lambda a: (a.create_time, a.id), reverse=True)
    pages: list[domain.Agent] = []
    after = None
    while True:
        page = await journal.list(flt, after, 7)
        pages.extend(page)
        if len(page) < 7:
            break
        after = PageCursor.of(page[-1].create_time, page[-1].id)
    assert [a.id for a in pages] == [a.id for a in expected]

    # The query plan: an index search in the listing's order, never a full scan or a sort of the matches.
    sql, args = Journal.list_query(flt, PageCursor.of(T0 + 30, "agent-0030"), 7)
    query_plan = " | ".join(row[3] for row in journal._reader.execute("EXPLAIN QUERY PLAN " + sql, args))
    assert "USE TEMP B-TREE" not in query_plan, query_plan
    assert "SCAN a" not in query_plan.replace("SCAN a USING INDEX", "").replace("SCAN a USING COVERING", ""), query_plan


async def test_schema_1_journal_is_migrated_with_its_labels(tmp_path: Path) -> None:
    j = Journal.open(tmp_path)
    await add(j, 1, finished_at=None, labels={"team": "a"})
    j.close()
    conn = sqlite3.connect(tmp_path / "journal.sqlite3")
    conn.executescript("DROP TABLE agent_labels; DROP TABLE expired_agents; PRAGMA user_version=1;")
    conn.close()
    again = Journal.open(tmp_path)
    try:
        assert [a.id for a in await again.list(ListFilter(labels=(("team", "a"),)), None, 10)] == ["agent-0001"]
    finally:
        again.close()


async def test_creation_time_window_out_of_range_is_invalid_argument(journal: Journal) -> None:
    service = SchedulerService(
        journal, doubles.Templates(), doubles.FakeExecutors({"ex-a": doubles.succeed}), ServiceSettings()
    )
    with pytest.raises(InvalidArgument, match="created_after is outside the years 1-9999"):
        list_query(0, "", "", 10, "", created_after=1e12)
    assert await service.list(list_query(0, "", "", 10, "", created_after=T0, created_before=T0 + 1)) == Page([])
