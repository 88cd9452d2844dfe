"""The agent journal on PostgreSQL, shared by every scheduler replica (asyncpg, one pool per process).

- create: one INSERT ... ON CONFLICT (request_id) DO NOTHING. Two replicas creating the same request_id
  at once both reach the unique index; exactly one inserts, the other reads the winner's row.
- Every unfinished agent carries a lease (owner, lease_until) and a fence. The creating replica owns it;
  `renew()` extends this replica's leases; `take_over()` claims unfinished agents whose lease expired
  (a dead replica's) with FOR UPDATE SKIP LOCKED, so two live replicas never claim the same agent, and
  bumps the fence. `update()` writes only if the row still has the fence this replica read: a replica
  that was presumed dead and comes back gets LeaseLost and cannot finish an agent someone else took over.
- Lease times come from the database's clock (now()), so replicas' clocks need not agree.
- A lost database connection surfaces as Unavailable; the pool reconnects by itself.
"""

from __future__ import annotations

import asyncio
import builtins  # PgJournal has a method named list: later annotations name the builtin explicitly
import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from services.common import postgres
from services.common.errors import Unavailable
from services.common.telemetry import span
from services.scheduler.domain import Agent, AgentState, ListFilter, PageCursor
from services.scheduler.journal import Journal, LeaseLost, row_to_agent, us

# The SQLite query's positional placeholders (the query holds no string literals, so no '?' but these).
_PLACEHOLDER = re.compile(r"\?")

COMPONENT = "scheduler"
MIGRATIONS = Path(__file__).with_name("migrations")
_UNFINISHED = (int(AgentState.PENDING), int(AgentState.RUNNING))

_MUTABLE = (
    "state", "reason", "cause", "status", "output", "output_truncated", "exit_code", "fuel_used", "attempts",
    "executor", "in_flight", "start_us", "finish_us",
)  # fmt: skip
_TYPES = {
    "state": "smallint", "reason": "text", "cause": "text", "status": "text", "output": "bytea",
    "output_truncated": "boolean", "exit_code": "integer", "fuel_used": "bigint", "attempts": "integer",
    "executor": "text", "in_flight": "boolean", "start_us": "bigint", "finish_us": "bigint",
}  # fmt: skip
# Group commit, PostgreSQL style: every update submitted while the previous batch is in flight goes out
# as one statement (one round trip, one WAL flush) over arrays, one element per agent. Each row is
# written only if its fence still matches; the ids written come back, the others are looked at one by one.
_BATCH_UPDATE_SQL = (
    f"UPDATE agents AS a SET {', '.join(f'{c} = v.{c}' for c in _MUTABLE)} "
    f"FROM unnest($1::text[], $2::bigint[], "
    f"{', '.join(f'${i}::{_TYPES[c]}[]' for i, c in enumerate(_MUTABLE, start=3))}) "
    f"AS v(id, fence, {', '.join(_MUTABLE)}) "
    "WHERE a.id = v.id AND a.fence = v.fence RETURNING a.id"
)
MAX_BATCH = 512
# A batch that lost a deadlock or serialization conflict is written again, this many times in all.
_CONFLICT_ATTEMPTS = 3
_INSERT_COLS = (
    "id", "request_id", "template_name", "template_version", "requested_version", "input", "labels", "retryable",
    "timeout_ms", *_MUTABLE, "deadline_us", "create_us", "owner", "fence",
)  # fmt: skip
_LABELS_ARG = _INSERT_COLS.index("labels") + 1
# One statement, so one round trip and atomic: the row and its labels (for listings by label), or nothing
# when the request_id is taken.
_INSERT_SQL = (
    f"WITH ins AS (INSERT INTO agents ({', '.join(_INSERT_COLS)}, lease_until) "
    f"VALUES ({', '.join(f'${i}' + ('::jsonb' if c == 'labels' else '') for i, c in enumerate(_INSERT_COLS, 1))}, "
    f"now() + make_interval(secs => ${len(_INSERT_COLS) + 1})) "
    "ON CONFLICT (request_id) DO NOTHING RETURNING seq, id, create_us), "
    "lab AS (INSERT INTO agent_labels (id, key, value, create_us) "
    f"SELECT ins.id, l.key, l.value, ins.create_us FROM ins, jsonb_each_text(${_LABELS_ARG}::jsonb) AS l) "
    "SELECT seq FROM ins"
)
_TERMINAL = int(AgentState.SUCCEEDED)  # every state from SUCCEEDED on is terminal (domain.AgentState)
_RETENTION_LOCK = 0x5C4ED01E  # transaction advisory lock: one replica's retention deletes at a time
_SELECT = "SELECT * FROM agents"


def _mutable_values(a: Agent) -> tuple[Any, ...]:
    return (
        int(a.state), a.reason, a.cause, a.status, a.output, a.output_truncated, a.exit_code, a.fuel_used,
        a.attempts, a.executor, a.in_flight, us(a.start_time), us(a.finish_time),
    )  # fmt: skip


def _row_to_agent(row: asyncpg.Record) -> Agent:
    return row_to_agent(row, fence=row["fence"])


class PgJournal:
    """Open with `await PgJournal.open(dsn, owner)`; `owner` names this replica (unique per process)."""

    def __init__(self, pool: asyncpg.Pool, owner: str, lease_seconds: float) -> None:
        if lease_seconds <= 0:
            raise ValueError("the lease must be longer than 0 s")
        self.pool = pool
        self.owner = owner
        self.lease_seconds = lease_seconds
        # Loop-side group commit state: updates waiting for the next batch, and whether one is in flight.
        self._waiting: list[tuple[Agent, asyncio.Future[None]]] = []
        self._flushing = False

    @classmethod
    async def open(cls, dsn: str, owner: str, lease_seconds: float = 10.0, pool_size: int = 10) -> PgJournal:
        pool = await postgres.create_pool(dsn, min_size=min(2, pool_size), max_size=pool_size)
        try:
            async with pool.acquire() as conn:
                # A pool's proxy forwards every Connection method; asyncpg-stubs type it apart.
                await postgres.migrate(conn, COMPONENT, postgres.load_migrations(MIGRATIONS))  # type: ignore[arg-type]
        except BaseException:
            await pool.close()
            raise
        return cls(pool, owner, lease_seconds)

    async def close(self) -> None:
        await self.pool.close()

    # --- writes ----------------------------------------------------------------------------------

    async def create(self, agent: Agent) -> tuple[Agent, bool]:
        """Journal a new agent owned (leased) by this replica. If its request_id is taken, returns the
        existing agent and False instead."""
        values = (
            agent.id, agent.request_id or None, agent.template_name, agent.template_version,
            agent.requested_version, agent.input, json.dumps(dict(agent.labels), sort_keys=True), agent.retryable,
            agent.timeout_ms, *_mutable_values(agent), us(agent.deadline), us(agent.create_time), self.owner, 1,
            self.lease_seconds,
        )  # fmt: skip
        with span("journal_write", op="create", agent=agent.id):
            async with postgres.connection(self.pool, "the agent journal could not write") as conn:
                seq = await conn.fetchval(_INSERT_SQL, *values)
                if seq is not None:
                    return dataclasses.replace(agent, seq=seq, fence=1), True
                row = await conn.fetchrow(f"{_SELECT} WHERE request_id = $1", agent.request_id)
        if row is None:  # the winner's row vanished (retention) between the two statements
            raise Unavailable("the agent journal changed under this create; retry")
        return _row_to_agent(row), False

    async def update(self, agent: Agent) -> None:
        """Journal an agent's new state (committed when this returns), if this replica still holds its
        lease (its fence); LeaseLost if another replica took the agent over, KeyError if there is no such
        agent. Callers write one agent at a time (book.py holds the agent's lock), so a batch never
        holds two updates of one agent."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((agent, future))
        if not self._flushing:
            self._flushing = True
            # After this loop iteration: updates from the other ready tasks join the batch.
            asyncio.get_running_loop().call_soon(self._flush_soon)
        with span("journal_write", op="update", agent=agent.id, state=agent.state.name):
            await future

    def _flush_soon(self) -> None:
        task = asyncio.create_task(self._flush())
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    await self._write(batch)
                except Exception as exc:  # every op of the batch learns it; the next batch still goes
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
        finally:
            self._flushing = False

    async def _write(self, batch: list[tuple[Agent, asyncio.Future[None]]]) -> None:
        agents = sorted((agent for agent, _ in batch), key=lambda a: a.id)  # one lock order for every writer
        columns = [list(column) for column in zip(*(_mutable_values(a) for a in agents), strict=True)]
        async with postgres.connection(self.pool, "the agent journal could not write") as conn:
            for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
                try:
                    ids, fences_sent = [a.id for a in agents], [a.fence for a in agents]
                    rows = await conn.fetch(_BATCH_UPDATE_SQL, ids, fences_sent, *columns)
                    break
                except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
                    # The statement was rolled back whole: writing it again is safe (each row is fenced).
                    if attempt == _CONFLICT_ATTEMPTS:
                        raise Unavailable(f"the agent journal could not write ({type(exc).__name__}); retry") from exc
            written = {row["id"] for row in rows}
            refused = [a.id for a in agents if a.id not in written]
            fences = {}
            if refused:
                found = await conn.fetch("SELECT id, fence FROM agents WHERE id = ANY($1::text[])", refused)
                fences = {row["id"]: row["fence"] for row in found}
        for agent, future in batch:
            if future.done():  # its caller went away; the write stands all the same
                continue
            if agent.id in written:
                future.set_result(None)
            elif agent.id not in fences:
                future.set_exception(KeyError(f"agent {agent.id} is not in the journal"))
            else:
                future.set_exception(
                    LeaseLost(
                        f"agent {agent.id} was taken over by another scheduler "
                        f"(fence {fences[agent.id]} > {agent.fence})"
                    )
                )

    async def request_cancel(self, agent_id: str, reason: str) -> bool:
        """Ask the replica running an unfinished agent to cancel it; False if the agent is not unfinished."""
        async with postgres.connection(self.pool, "the agent journal could not write") as conn:
            status = await conn.execute(
                "UPDATE agents SET cancel_reason = $2 WHERE id = $1 AND state IN (1, 2) AND cancel_reason IS NULL",
                agent_id,
                reason,
            )
            if status == "UPDATE 1":
                return True
            return bool(await conn.fetchval("SELECT state IN (1, 2) FROM agents WHERE id = $1", agent_id))

    async def cancel_requests(self) -> list[tuple[str, str]]:
        """(id, reason) of this replica's unfinished agents another replica was asked to cancel."""
        async with postgres.connection(self.pool, "the agent journal could not read") as conn:
            rows = await conn.fetch(
                "SELECT id, cancel_reason FROM agents WHERE owner = $1 AND cancel_reason IS NOT NULL "
                "AND state IN (1, 2)",
                self.owner,
            )
        return [(row["id"], row["cancel_reason"]) for row in rows]

    async def renew(self) -> int:
        """Extend this replica's leases on its unfinished agents; returns how many it holds."""
        async with postgres.connection(self.pool, "the agent journal could not renew leases") as conn:
            # Rows a batched update holds right now are skipped, not waited for: waiting would lock rows in
            # another order than that update and deadlock (seen under make perf-backends); such a row was
            # just written by this replica and is renewed on the next round, well inside its lease.
            status = await conn.execute(
                "UPDATE agents SET lease_until = now() + make_interval(secs => $2) "
                "WHERE seq IN (SELECT seq FROM agents WHERE owner = $1 AND state IN (1, 2) "
                "ORDER BY seq FOR UPDATE SKIP LOCKED)",
                self.owner,
                self.lease_seconds,
            )
        return int(status.rsplit(" ", 1)[-1])

    async def take_over(self, limit: int = 500) -> list[Agent]:
        """Claim unfinished agents whose lease expired (their replica is gone), oldest first, with a new
        fence each. Rows another replica is claiming at this moment are skipped, not waited for."""
        async with postgres.connection(self.pool, "the agent journal could not claim agents") as conn:
            rows = await conn.fetch(
                "UPDATE agents SET owner = $1, lease_until = now() + make_interval(secs => $2), fence = fence + 1 "
                "WHERE seq IN (SELECT seq FROM agents WHERE state IN (1, 2) AND lease_until < now() "
                "ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING *",
                self.owner,
                self.lease_seconds,
                limit,
            )
        return sorted((_row_to_agent(r) for r in rows), key=lambda a: a.seq)

    # --- reads -----------------------------------------------------------------------------------

    async def get(self, agent_id: str) -> Agent | None:
        async with postgres.connection(self.pool, "the agent journal could not read") as conn:
            row = await conn.fetchrow(f"{_SELECT} WHERE id = $1", agent_id)
        return None if row is None else _row_to_agent(row)

    async def get_by_request_id(self, request_id: str) -> Agent | None:
        async with postgres.connection(self.pool, "the agent journal could not read") as conn:
            row = await conn.fetchrow(f"{_SELECT} WHERE request_id = $1", request_id)
        return None if row is None else _row_to_agent(row)

    async def list(self, flt: ListFilter, after: PageCursor | None, limit: int) -> list[Agent]:
        """Newest first (creation time, then id), after `after`: the SQLite journal's order and the same
        keyset pages on an index that matches the filter (a label filter walks agent_labels)."""
        sql, args = self.list_query(flt, after, limit)
        async with postgres.connection(self.pool, "the agent journal could not read") as conn:
            rows = await conn.fetch(sql, *args)
        return [_row_to_agent(row) for row in rows]

    @staticmethod
    def list_query(flt: ListFilter, after: PageCursor | None, limit: int) -> tuple[str, builtins.list[Any]]:
        """journal.Journal.list_query (one query for both journals: the same filters, order and keyset
        pages on the same indexes) in PostgreSQL's numbered placeholders."""
        sql, args = Journal.list_query(flt, after, limit)
        numbered = iter(range(1, len(args) + 1))
        return _PLACEHOLDER.sub(lambda _: f"${next(numbered)}", sql), args

    async def unfinished(self) -> Sequence[Agent]:
        """Every agent not yet terminal, whoever holds it, oldest first."""
        async with postgres.connection(self.pool, "the agent journal could not read") as conn:
            rows = await conn.fetch(f"{_SELECT} WHERE state IN (1, 2) ORDER BY seq")
        return [_row_to_agent(row) for row in rows]

    async def count(self) -> int:
        async with postgres.connection(self.pool, "the agent journal could not read") as conn:
            return int(await conn.fetchval("SELECT COUNT(*) FROM agents"))

    # --- retention (services/scheduler/retention.py drives these; see RetentionJournal) --------------

    async def expired_ids(
        self, finished_before_us: int | None, keep_per_template: int | None, limit: int
    ) -> builtins.list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        async with postgres.connection(self.pool, "retention could not read the journal") as conn:
            if finished_before_us is not None:
                rows = await conn.fetch(
                    "SELECT id FROM agents WHERE finish_us IS NOT NULL AND finish_us < $1 AND state >= $2 "
                    "ORDER BY finish_us LIMIT $3",
                    finished_before_us,
                    _TERMINAL,
                    limit,
                )
                found.extend((row["id"], "age") for row in rows)
            if keep_per_template is not None and len(found) < limit:
                seen = {agent_id for agent_id, _ in found}
                templates = [row[0] for row in await conn.fetch("SELECT DISTINCT template_name FROM agents")]
                for template in templates:
                    rows = await conn.fetch(
                        "SELECT id FROM agents WHERE template_name = $1 AND state >= $2 "
                        "ORDER BY create_us DESC, id DESC LIMIT $3 OFFSET $4",
                        template,
                        _TERMINAL,
                        limit - len(found),
                        keep_per_template,
                    )
                    found.extend((row["id"], "count") for row in rows if row["id"] not in seen)
                    if len(found) >= limit:
                        break
        return found[:limit]

    async def delete_expired(self, ids: Sequence[str], now_us: int) -> int:
        if not ids:
            return 0
        with span("journal_write", op="expire", agents=len(ids)):
            async with (
                postgres.connection(self.pool, "retention could not write the journal") as conn,
                conn.transaction(),
            ):
                # One replica at a time: concurrent deletes of overlapping ids could deadlock; the other
                # replicas' passes skip (their ids are the same finished agents) and retry next period.
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RETENTION_LOCK):
                    return 0
                # Only agents still finished ("never an unfinished agent" by construction).
                gone = [
                    row["id"]
                    for row in await conn.fetch(
                        "DELETE FROM agents WHERE id = ANY($1::text[]) AND state >= $2 RETURNING id",
                        list(ids),
                        _TERMINAL,
                    )
                ]
                if gone:
                    await conn.execute("DELETE FROM agent_labels WHERE id = ANY($1::text[])", gone)
                    await conn.execute(
                        "INSERT INTO expired_agents (id, expired_us) SELECT unnest($1::text[]), $2 "
                        "ON CONFLICT (id) DO UPDATE SET expired_us = excluded.expired_us",
                        gone,
                        now_us,
                    )
        return len(gone)

    async def prune_tombstones(self, before_us: int, limit: int) -> int:
        async with postgres.connection(self.pool, "retention could not write the journal") as conn:
            status = await conn.execute(
                "DELETE FROM expired_agents WHERE id IN "
                "(SELECT id FROM expired_agents WHERE expired_us < $1 ORDER BY expired_us LIMIT $2)",
                before_us,
                limit,
            )
        return int(status.rsplit(" ", 1)[-1])

    async def tombstone_cutoff(self, keep: int) -> int | None:
        async with postgres.connection(self.pool, "retention could not read the journal") as conn:
            value = await conn.fetchval(
                "SELECT expired_us FROM expired_agents ORDER BY expired_us DESC LIMIT 1 OFFSET $1", keep
            )
        return None if value is None else int(value)

    async def expired_at(self, agent_id: str) -> int | None:
        async with postgres.connection(self.pool, "the agent journal could not read") as conn:
            value = await conn.fetchval("SELECT expired_us FROM expired_agents WHERE id = $1", agent_id)
        return None if value is None else int(value)
