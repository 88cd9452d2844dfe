"""What only the shared (PostgreSQL) journal has: replicas, leases, fences, SKIP LOCKED claims, and
versioned migrations. A real PostgreSQL 15 (tests/postgres.py); the common contract is in
test_journal_contract.py."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from mesh.pglocal import LocalPostgres
from services.common import postgres
from services.scheduler import domain
from services.scheduler.domain import CreateSpec, ListFilter, TemplateInfo
from services.scheduler.journal import LeaseLost
from services.scheduler.journal_pg import COMPONENT, MIGRATIONS, PgJournal
from tests.postgres import pg_dsn, postgres_server  # noqa: F401 — fixtures

TEMPLATE = TemplateInfo("echo", "1.0.0", retryable=True, timeout_ms=1000)


def agent(i: int, request_id: str = "", labels: dict[str, str] | None = None) -> domain.Agent:
    spec = CreateSpec("echo", input=b"x", request_id=request_id, labels=labels or {})
    return domain.new_agent(f"agent-{i:04d}", spec, TEMPLATE, now=1_700_000_000.0 + i, deadline=None)


@pytest.fixture
async def replicas(pg_dsn: str) -> AsyncIterator[list[PgJournal]]:  # noqa: F811
    opened = [await PgJournal.open(pg_dsn, owner=f"r{i}", lease_seconds=0.5) for i in range(3)]
    yield opened
    for journal in opened:
        await journal.close()


async def until_taken(journal: PgJournal) -> list[domain.Agent]:
    for _ in range(100):
        if taken := await journal.take_over():
            return taken
        await asyncio.sleep(0.1)
    raise AssertionError("nothing was taken over")


async def test_concurrent_creates_on_replicas_make_one_agent(replicas: list[PgJournal]) -> None:
    for n in range(10):
        results = await asyncio.gather(
            *(replicas[i % 3].create(agent(100 * n + i, request_id=f"req-{n}")) for i in range(9))
        )
        assert sum(created for _, created in results) == 1
        assert len({stored.id for stored, _ in results}) == 1


async def test_a_live_replica_keeps_its_agents(replicas: list[PgJournal]) -> None:
    owner, other, _ = replicas
    await owner.create(agent(1))
    for _ in range(8):  # well past the lease, renewed all along
        await asyncio.sleep(0.2)
        assert await owner.renew() == 1
        assert await other.take_over() == []


async def test_a_dead_replicas_agents_are_claimed_once_and_fenced(replicas: list[PgJournal]) -> None:
    dead, a, b = replicas
    stored = [(await dead.create(agent(i)))[0] for i in range(20)]
    # Two live replicas claim at once: SKIP LOCKED splits the orphans, nobody gets one twice.
    await asyncio.sleep(0.6)
    first, second = await asyncio.gather(a.take_over(), b.take_over())
    claimed = [x.id for x in first] + [x.id for x in second]
    assert sorted(claimed) == sorted(x.id for x in stored)
    assert all(x.fence == 2 for x in first + second)
    # The presumed-dead replica comes back: its writes are refused, the new owner's go through.
    with pytest.raises(LeaseLost):
        await dead.update(domain.mark_dispatching(stored[0]))
    taker = a if stored[0].id in {x.id for x in first} else b
    mine = next(x for x in first + second if x.id == stored[0].id)
    await taker.update(domain.mark_dispatching(mine))
    assert (await dead.get(stored[0].id)).in_flight  # type: ignore[union-attr]


async def test_a_restarted_owner_name_does_not_reclaim_live_leases(replicas: list[PgJournal]) -> None:
    owner, other, _ = replicas
    await owner.create(agent(1))
    assert await other.take_over() == []  # the lease is current
    taken = await until_taken(other)
    assert [x.id for x in taken] == ["agent-0001"]
    assert await owner.renew() == 0  # its lease went with the agent


async def test_migrations_from_empty_and_from_the_previous_version(pg_dsn: str) -> None:  # noqa: F811
    migrations = postgres.load_migrations(MIGRATIONS)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1)) and len(migrations) >= 2
    conn = await asyncpg.connect(pg_dsn)
    try:
        # Schema 1 with an agent in it (labels only in the JSONB column then), as an older release left it.
        assert await postgres.migrate(conn, COMPONENT, migrations[:1]) == [1]
        old = PgJournal(await postgres.create_pool(pg_dsn, min_size=1, max_size=2), "old", 5.0)
        values = agent(1, labels={"team": "a"})
        await old.pool.execute(
            "INSERT INTO agents (id, template_name, template_version, requested_version, input, labels, "
            "retryable, timeout_ms, state, reason, cause, status, output, output_truncated, exit_code, fuel_used, "
            "attempts, executor, in_flight, create_us, owner, lease_until, fence) VALUES ($1, 'echo', '1.0.0', '', "
            "'', '{\"team\": \"a\"}', true, 1000, 1, '', '', '', '', false, 0, 0, 0, '', false, $2, 'old', now(), 1)",
            values.id,
            round(values.create_time * 1_000_000),
        )
        await old.close()
        # Concurrent starts of the new release: one applies 0002, the others find it done.
        others = [await asyncpg.connect(pg_dsn) for _ in range(2)]
        applied = await asyncio.gather(*(postgres.migrate(c, COMPONENT, migrations) for c in [conn, *others]))
        for c in others:
            await c.close()
        assert sorted(applied) == [[], [], list(range(2, len(migrations) + 1))]
        journal = await PgJournal.open(pg_dsn, owner="new")
        try:  # the label was carried into the new index table
            assert [a.id for a in await journal.list(ListFilter(labels=(("team", "a"),)), None, 10)] == [values.id]
        finally:
            await journal.close()
        assert await postgres.schema_version(conn, COMPONENT) == len(migrations)
    finally:
        await conn.close()


async def test_a_newer_or_edited_schema_is_refused(pg_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    migrations = postgres.load_migrations(MIGRATIONS)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await postgres.migrate(conn, COMPONENT, migrations)
        with pytest.raises(RuntimeError, match="newer than this code"):
            await postgres.migrate(conn, COMPONENT, migrations[:1])
        edited = [dataclasses.replace(migrations[0], sql=migrations[0].sql + "\n-- edited"), *migrations[1:]]
        with pytest.raises(RuntimeError, match="edited after it was applied"):
            await postgres.migrate(conn, COMPONENT, edited)
    finally:
        await conn.close()
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0003_c.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="0002 is missing"):
        postgres.load_migrations(tmp_path)


async def test_cancel_requests_reach_the_owner_only(replicas: list[PgJournal]) -> None:
    owner, other, _ = replicas
    stored, _ = await owner.create(agent(1))
    assert await other.request_cancel(stored.id, "stop it") is True
    assert await other.cancel_requests() == []
    assert await owner.cancel_requests() == [(stored.id, "stop it")]
    done = domain.finish(stored, domain.Outcome(domain.AgentState.CANCELLED, "stop it", "cancelled", "CANCELLED"), 1.0)
    await owner.update(done)
    assert await owner.cancel_requests() == []  # only unfinished agents are asked about
    assert await other.request_cancel(stored.id, "again") is False
    assert await other.request_cancel("no-such-agent", "x") is False


async def test_a_role_with_row_privileges_only_serves_a_migrated_journal(
    pg_dsn: str,  # noqa: F811
    postgres_server: LocalPostgres,  # noqa: F811
) -> None:
    await (await PgJournal.open(pg_dsn, owner="migrator")).close()  # the owner migrates
    role = f"af_sched_{uuid.uuid4().hex[:8]}"
    database = urlsplit(pg_dsn).path.lstrip("/")
    postgres_server.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    try:
        postgres_server.psql(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON agents, agent_labels, expired_agents TO {role}; "
            f"GRANT USAGE ON SEQUENCE agents_seq_seq TO {role}; GRANT SELECT ON schema_migrations TO {role}",
            database,
        )
        parts = urlsplit(pg_dsn)
        limited = urlunsplit(parts._replace(netloc=f"{role}:pw@{parts.hostname}:{parts.port}"))
        journal = await PgJournal.open(limited, owner="limited")  # docs/database.md's grants are enough
        try:
            _, created = await journal.create(agent(1, labels={"k": "v"}))
            assert created and await journal.take_over() == []
        finally:
            await journal.close()
    finally:
        postgres_server.psql(f"DROP OWNED BY {role}; DROP ROLE {role}", database)


async def test_lease_renewal_never_deadlocks_with_batched_updates(replicas: list[PgJournal]) -> None:
    """A renewal running while a batch of updates holds some of the same rows: no deadlock and no failed
    write, whatever order the batch arrives in (make perf-backends once saw DeadlockDetectedError here:
    the renewal locked rows in seq order while a batch held others in its own order)."""
    journal = replicas[0]
    stored = [(await journal.create(agent(i)))[0] for i in range(300)]
    running = [domain.mark_dispatching(a) for a in stored]

    async def renew_all_the_time(stop: asyncio.Event) -> int:
        rounds = 0
        while not stop.is_set():
            await journal.renew()
            rounds += 1
        return rounds

    for round_ in range(6):
        stop = asyncio.Event()
        renewer = asyncio.create_task(renew_all_the_time(stop))
        order = running[::-1] if round_ % 2 else running  # against seq order, then with it
        await asyncio.gather(*(journal.update(a) for a in order))
        stop.set()
        assert await renewer > 0
    after = [await journal.get(a.id) for a in running]
    assert all(a is not None and a.in_flight for a in after)
