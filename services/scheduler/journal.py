"""The agent journal: SQLite in WAL mode with group commit; fsyncs happen on a committer thread.

Durability: `synchronous=FULL` by default. In WAL mode that fsyncs the log on every commit, so an
acknowledged create survives power loss, not only a process kill (NORMAL would survive kill -9 but
could lose the last commits on power loss). FULL costs one fsync per *transaction*, and every write that
arrives while a commit is in flight goes into the next transaction, so under load many creates share
one fsync: throughput comes from batching, not from weakening durability.

Writes go through `submit()` from the event loop. The op's statements run at once on the loop's thread
inside the open transaction (each op in its own savepoint, so one failing op does not undo the others;
ops with a single write statement skip it, since SQLite undoes a failed statement by itself); ops
submitted in the same loop iteration share the transaction. Then the committer thread runs COMMIT
(the fsync) and hands the whole batch's results back in one loop callback; the caller's future resolves
only after COMMIT returned. Ops submitted while a commit is in flight wait in memory and form the next
transaction. Statements are microseconds of page-cache work; only the fsync is slow, and only it leaves
the loop: one thread hand-off per batch instead of one GIL round trip per statement (perf/NOTES.md).
Reads use a separate connection; WAL lets them run while a commit is in progress.
"""

from __future__ import annotations

import asyncio
import builtins  # Journal has a method named list: later annotations name the builtin explicitly
import contextlib
import dataclasses
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from services.common.errors import Unavailable
from services.common.telemetry import span
from services.scheduler import metrics
from services.scheduler.domain import Agent, AgentState, ListFilter, PageCursor

log = logging.getLogger(__name__)

T = TypeVar("T")
SCHEMA_VERSION = 2
_SYNC_MODES = ("FULL", "NORMAL", "EXTRA")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    request_id TEXT UNIQUE,
    template_name TEXT NOT NULL,
    template_version TEXT NOT NULL,
    requested_version TEXT NOT NULL,
    input BLOB NOT NULL,
    labels TEXT NOT NULL,
    retryable INTEGER NOT NULL,
    timeout_ms INTEGER NOT NULL,
    state INTEGER NOT NULL,
    reason TEXT NOT NULL,
    cause TEXT NOT NULL,
    status TEXT NOT NULL,
    output BLOB NOT NULL,
    output_truncated INTEGER NOT NULL,
    exit_code INTEGER NOT NULL,
    fuel_used INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    executor TEXT NOT NULL,
    in_flight INTEGER NOT NULL,
    deadline_us INTEGER,
    create_us INTEGER NOT NULL,
    start_us INTEGER,
    finish_us INTEGER
);
CREATE INDEX IF NOT EXISTS agents_by_create ON agents(create_us, id);
"""

# Schema 2 (issue 15): every list filter has an index in the listing's order (newest first by creation
# time, then id), so a page costs its own size whatever the filter; labels get a table of their own (a
# label filter that matches nothing is one index probe, not a scan of every row's JSON); finished agents
# are found by finish time for retention, and expired ids leave a tombstone.
_SCHEMA_2 = """
DROP INDEX IF EXISTS agents_by_state;
DROP INDEX IF EXISTS agents_by_template;
CREATE INDEX IF NOT EXISTS agents_by_state_time ON agents(state, create_us, id);
CREATE INDEX IF NOT EXISTS agents_by_template_time ON agents(template_name, create_us, id);
CREATE INDEX IF NOT EXISTS agents_by_template_state_time ON agents(template_name, state, create_us, id);
CREATE INDEX IF NOT EXISTS agents_by_finish ON agents(finish_us) WHERE finish_us IS NOT NULL;
CREATE TABLE IF NOT EXISTS agent_labels (
    id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    create_us INTEGER NOT NULL,
    PRIMARY KEY (id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS agent_labels_by_pair ON agent_labels(key, value, create_us, id);
CREATE TABLE IF NOT EXISTS expired_agents (id TEXT PRIMARY KEY, expired_us INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expired_agents_by_time ON expired_agents(expired_us);
"""
_BACKFILL_LABELS = """
INSERT OR IGNORE INTO agent_labels (id, key, value, create_us)
SELECT a.id, j.key, j.value, a.create_us FROM agents a, json_each(a.labels) j
"""
_LABELS_SQL = "INSERT INTO agent_labels (id, key, value, create_us) VALUES (?, ?, ?, ?)"
_TERMINAL = int(AgentState.SUCCEEDED)  # every state from SUCCEEDED on is terminal (domain.AgentState)

_MUTABLE = (
    "state", "reason", "cause", "status", "output", "output_truncated", "exit_code", "fuel_used", "attempts",
    "executor", "in_flight", "start_us", "finish_us",
)  # fmt: skip
_UPDATE_SQL = f"UPDATE agents SET {', '.join(f'{c} = ?' for c in _MUTABLE)} WHERE id = ?"
_INSERT_COLS = (
    "id", "request_id", "template_name", "template_version", "requested_version", "input", "labels", "retryable",
    "timeout_ms", *_MUTABLE, "deadline_us", "create_us",
)  # fmt: skip
_INSERT_SQL = f"INSERT INTO agents ({', '.join(_INSERT_COLS)}) VALUES ({', '.join('?' * len(_INSERT_COLS))})"


class LeaseLost(Unavailable):
    """Another scheduler replica took this agent over (PostgreSQL mode): this one must let it go."""


def us(t: float | None) -> int | None:
    return None if t is None else round(t * 1_000_000)


def sec(micros: int | None) -> float | None:
    return None if micros is None else micros / 1_000_000


def _mutable_values(a: Agent) -> tuple[Any, ...]:
    return (
        int(a.state), a.reason, a.cause, a.status, a.output, int(a.output_truncated), a.exit_code, a.fuel_used,
        a.attempts, a.executor, int(a.in_flight), us(a.start_time), us(a.finish_time),
    )  # fmt: skip


class Row(Protocol):
    """A row by column name: sqlite3.Row and asyncpg.Record alike."""

    def __getitem__(self, column: str, /) -> Any: ...


def row_to_agent(row: Row, fence: int = 0) -> Agent:
    """An agent from a journal row, for both journals (SQLite keeps booleans as 0/1, PostgreSQL as
    booleans; only the shared journal has a fence column, so its adapter passes it)."""
    return Agent(
        seq=row["seq"],
        id=row["id"],
        request_id=row["request_id"] or "",
        template_name=row["template_name"],
        template_version=row["template_version"],
        requested_version=row["requested_version"],
        input=bytes(row["input"]),
        labels=json.loads(row["labels"]),
        retryable=bool(row["retryable"]),
        timeout_ms=row["timeout_ms"],
        state=AgentState(row["state"]),
        reason=row["reason"],
        cause=row["cause"],
        status=row["status"],
        output=bytes(row["output"]),
        output_truncated=bool(row["output_truncated"]),
        exit_code=row["exit_code"],
        fuel_used=row["fuel_used"],
        attempts=row["attempts"],
        executor=row["executor"],
        in_flight=bool(row["in_flight"]),
        deadline=sec(row["deadline_us"]),
        create_time=sec(row["create_us"]) or 0.0,
        start_time=sec(row["start_us"]),
        finish_time=sec(row["finish_us"]),
        fence=fence,
    )


def _settle_batch(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """On the event loop: hand each op its result. A caller may have gone (its future was cancelled);
    the write is committed all the same."""
    for future, value, exc in results:
        if future.done():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)


@dataclass
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    # True when fn writes with at most one statement: a failing statement changes nothing, so the
    # op needs no savepoint of its own (two fewer statements per op).
    atomic: bool = False


_Result = tuple["asyncio.Future[Any]", Any, BaseException | None]


class Journal:
    """Open with `Journal.open(dir)`; close with `close()` (commits what was submitted first)."""

    def __init__(self, path: Path, synchronous: str = "FULL", max_batch: int = 512) -> None:
        if synchronous.upper() not in _SYNC_MODES:
            raise ValueError(f"journal synchronous mode must be one of {_SYNC_MODES}, not {synchronous!r}")
        self.path = path
        self.synchronous = synchronous.upper()
        self.max_batch = max_batch
        self._writer_conn = self._connect()
        self._init_schema(self._writer_conn)
        self._reader = self._connect()
        self._retention_conn: sqlite3.Connection | None = None
        self._retention_lock = threading.Lock()
        self._closed = False
        self._taken_over = False
        # Loop-side state (touched only on the event loop's thread, or by close() once the committer is gone).
        self._batch: list[_Result] = []  # ops executed into the open transaction
        self._waiting: list[_Op] = []  # ops submitted while a commit is in flight
        self._committing = False
        self._commit_scheduled = False
        self._commits: queue.SimpleQueue[tuple[list[_Result], asyncio.AbstractEventLoop] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="journal-committer", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, data_dir: Path, synchronous: str = "FULL") -> Journal:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / "journal.sqlite3", synchronous)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so a batch is exactly one transaction.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has journal schema {version}, newer than this scheduler's {SCHEMA_VERSION}; "
                "run a newer scheduler or restore a backup"
            )
        conn.executescript(_SCHEMA)
        if version < 2:
            conn.executescript("BEGIN;" + _SCHEMA_2 + _BACKFILL_LABELS + "; COMMIT;")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # --- executing ops (event loop thread) -------------------------------------------------------

    def submit(self, fn: Callable[[sqlite3.Connection], T], *, atomic: bool = False) -> asyncio.Future[T]:
        """Run `fn` in the open transaction (or the next one, if a commit is in flight); the returned
        future resolves after that transaction committed. Pass atomic=True only when fn writes with at
        most one statement. Call from the event loop's thread."""
        if self._closed:
            raise Unavailable("the scheduler is shutting down; retry on another instance")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        op = _Op(fn, future, atomic)
        if self._committing:
            self._waiting.append(op)
            return future
        self._execute([op])
        if not self._commit_scheduled:
            # Commit after this loop iteration: ops submitted by the other ready tasks join this transaction.
            self._commit_scheduled = True
            loop.call_soon(self._start_commit, loop)
        return future

    def _execute(self, ops: list[_Op]) -> None:
        """Run ops into the open transaction (BEGIN if none). The committer must not be using the connection."""
        conn = self._writer_conn
        for op in ops:
            try:
                if not conn.in_transaction:
                    conn.execute("BEGIN IMMEDIATE")
                if op.atomic:
                    try:
                        self._batch.append((op.future, op.fn(conn), None))
                    except Exception as exc:  # the failed statement was undone; the transaction goes on
                        if not conn.in_transaction:  # an error that aborted the transaction (disk full, I/O)
                            raise
                        self._batch.append((op.future, None, exc))
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    value = op.fn(conn)
                except Exception as exc:  # one bad op must not undo the batch
                    if not conn.in_transaction:
                        raise
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    self._batch.append((op.future, None, exc))
                else:
                    conn.execute("RELEASE op")
                    self._batch.append((op.future, value, None))
            except sqlite3.Error as exc:
                # The transaction is gone (or never began): everything in it was lost, this op included.
                log.exception("journal transaction aborted", extra={"fields": {"batch": len(self._batch) + 1}})
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                failure = Unavailable(f"the agent journal could not write ({exc}); nothing was recorded, retry")
                _settle_batch([(f, None, failure) for f, _, _ in self._batch] + [(op.future, None, failure)])
                self._batch = []

    def _start_commit(self, loop: asyncio.AbstractEventLoop) -> None:
        self._commit_scheduled = False
        if self._committing or self._closed:
            return
        batch, self._batch = self._batch, []
        if not self._writer_conn.in_transaction:  # every op failed and rolled back: nothing to commit
            _settle_batch(batch)
            return
        self._committing = True
        self._commits.put((batch, loop))

    def _committed(self, loop: asyncio.AbstractEventLoop, results: list[_Result]) -> None:
        """On the loop, after the committer finished a batch: answer it, then start the next one."""
        self._committing = False
        _settle_batch(results)
        if self._closed or not self._waiting:
            return
        ops, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        self._execute(ops)
        self._start_commit(loop)

    # --- the committer thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._commits.get()
            if item is None:  # the signal to stop
                return
            batch, loop = item
            results = self._commit(batch)
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(self._committed, loop, results)

    def _commit(self, batch: list[_Result]) -> list[_Result]:
        conn = self._writer_conn
        started = time.perf_counter()
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("journal commit failed", extra={"fields": {"batch": len(batch)}})
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = Unavailable(f"the agent journal could not commit ({exc}); nothing was recorded, retry")
            return [(future, None, failure) for future, _, _ in batch]
        metrics.JOURNAL_COMMIT.observe(time.perf_counter() - started)
        metrics.JOURNAL_BATCH.observe(len(batch))
        return batch

    def close(self) -> None:
        """Commit what was submitted, stop the committer, close the connections. Futures of ops committed
        here resolve if their loop still runs."""
        if self._closed:
            return
        self._closed = True
        self._commits.put(None)  # the committer thread's signal to stop
        self._thread.join()  # after the commit in flight, if any
        if self._waiting:
            self._execute(self._waiting)
            self._waiting = []
        batch, self._batch = self._batch, []
        if self._writer_conn.in_transaction:
            results = self._commit(batch)
            if results:
                loop = results[0][0].get_loop()
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle_batch, results)
        self._writer_conn.close()
        self._reader.close()
        with self._retention_lock:  # after any retention search still running (see _on_retention_connection)
            if self._retention_conn is not None:
                self._retention_conn.close()

    # --- writes ----------------------------------------------------------------------------------

    async def create(self, agent: Agent) -> tuple[Agent, bool]:
        """Journal a new agent. If its request_id is taken, returns the existing agent and False
        instead: the writer is the only one inserting, so this check cannot race."""

        def op(conn: sqlite3.Connection) -> tuple[Agent, bool]:
            if agent.request_id:
                row = conn.execute("SELECT * FROM agents WHERE request_id = ?", (agent.request_id,)).fetchone()
                if row is not None:
                    return row_to_agent(row), False
            values = (
                agent.id, agent.request_id or None, agent.template_name, agent.template_version,
                agent.requested_version, agent.input, json.dumps(dict(agent.labels), sort_keys=True),
                int(agent.retryable), agent.timeout_ms, *_mutable_values(agent), us(agent.deadline),
                us(agent.create_time),
            )  # fmt: skip
            cur = conn.execute(_INSERT_SQL, values)
            if agent.labels:
                create_us = us(agent.create_time)
                conn.executemany(_LABELS_SQL, [(agent.id, k, v, create_us) for k, v in agent.labels.items()])
            # An INSERT always sets lastrowid; sqlite3's stub allows None (a cursor that inserted nothing).
            return dataclasses.replace(agent, seq=cur.lastrowid), True  # type: ignore[arg-type]

        with span("journal_write", op="create", agent=agent.id):
            # One INSERT (the SELECT writes nothing) unless labels add theirs: then the op needs a savepoint.
            return await self.submit(op, atomic=not agent.labels)

    async def update(self, agent: Agent) -> None:
        """Journal an agent's new state (every mutable column; the row is small)."""

        def op(conn: sqlite3.Connection) -> None:
            cur = conn.execute(_UPDATE_SQL, (*_mutable_values(agent), agent.id))
            if cur.rowcount != 1:
                raise KeyError(f"agent {agent.id} is not in the journal")

        with span("journal_write", op="update", agent=agent.id, state=agent.state.name):
            await self.submit(op, atomic=True)

    # --- reads -----------------------------------------------------------------------------------

    # Reads are coroutines only because the port (ports.AgentJournal) is shared with the PostgreSQL
    # journal; here they stay plain page-cache reads on the loop's thread, never awaiting anything.

    async def get(self, agent_id: str) -> Agent | None:
        row = self._reader.execute("SELECT * FROM agents WHERE id = ?", (agent_id,)).fetchone()
        return None if row is None else row_to_agent(row)

    async def get_by_request_id(self, request_id: str) -> Agent | None:
        row = self._reader.execute("SELECT * FROM agents WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else row_to_agent(row)

    async def list(self, flt: ListFilter, after: PageCursor | None, limit: int) -> list[Agent]:
        """Newest first (creation time, then id): the agents after `after`, the last one of the previous
        page. A cursor of time and id, not of this journal's seq, so the pages of two colors' journals
        merge (services/scheduler/servicer.py). Keyset pagination on an index that matches the filter:
        a label filter walks agent_labels by its first pair, otherwise state/template indexes."""
        sql, args = self.list_query(flt, after, limit)
        return [row_to_agent(row) for row in self._reader.execute(sql, args)]

    @staticmethod
    def list_query(flt: ListFilter, after: PageCursor | None, limit: int) -> tuple[str, builtins.list[Any]]:
        """The listing's SQL and arguments (tests check its query plan)."""
        where: list[str] = []
        args: list[Any] = []
        labels = list(flt.labels)
        if labels:
            key, value = labels.pop(0)
            sql = "SELECT a.* FROM agent_labels l JOIN agents a ON a.id = l.id"
            where.append("l.key = ? AND l.value = ?")
            args.extend((key, value))
            order = "l.create_us DESC, l.id DESC"
            cursor_cols = "(l.create_us, l.id)"
        else:
            sql = "SELECT a.* FROM agents a"
            order = "a.create_us DESC, a.id DESC"
            cursor_cols = "(a.create_us, a.id)"
        if after is not None:
            where.append(f"{cursor_cols} < (?, ?)")
            args.extend((after.create_us, after.agent_id))
        created = cursor_cols.split(",")[0].lstrip("(")  # the driving table's create_us: same index range
        if flt.created_after_us is not None:
            where.append(f"{created} >= ?")
            args.append(flt.created_after_us)
        if flt.created_before_us is not None:
            where.append(f"{created} < ?")
            args.append(flt.created_before_us)
        if flt.state is not None:
            where.append("a.state = ?")
            args.append(int(flt.state))
        if flt.template_name:
            where.append("a.template_name = ?")
            args.append(flt.template_name)
        for key, value in labels:
            where.append("EXISTS (SELECT 1 FROM agent_labels x WHERE x.id = a.id AND x.key = ? AND x.value = ?)")
            args.extend((key, value))
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order} LIMIT ?"
        args.append(limit)
        return sql, args

    async def unfinished(self) -> Sequence[Agent]:
        """Every agent not yet terminal, oldest first: what recovery must act on."""
        rows = self._reader.execute(
            "SELECT * FROM agents WHERE state IN (?, ?) ORDER BY seq", (AgentState.PENDING, AgentState.RUNNING)
        )
        return [row_to_agent(row) for row in rows]

    async def count(self) -> int:
        count: int = self._reader.execute("SELECT COUNT(*) FROM agents").fetchone()[0]
        return count

    # --- retention (services/scheduler/retention.py drives these) ---------------------------------

    def _on_retention_connection(self, search: Callable[[sqlite3.Connection], T]) -> T:
        """Run one of retention's searches on a connection of its own, from a worker thread only (sqlite3
        releases the GIL while it steps, so a long search never runs on the event loop's thread). The lock
        keeps close() from closing that connection under a search still stepping: sqlite3 would crash the
        whole process (seen: a segfault when a test closed its journal mid-search)."""
        with self._retention_lock:
            if self._closed:
                raise Unavailable("the agent journal is closed")
            if self._retention_conn is None:
                self._retention_conn = self._connect()
            return search(self._retention_conn)

    async def expired_ids(
        self, finished_before_us: int | None, keep_per_template: int | None, limit: int
    ) -> builtins.list[tuple[str, str]]:
        def search(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            found: list[tuple[str, str]] = []
            if finished_before_us is not None:
                rows = conn.execute(
                    "SELECT id FROM agents WHERE finish_us IS NOT NULL AND finish_us < ? AND state >= ? "
                    "ORDER BY finish_us LIMIT ?",
                    (finished_before_us, _TERMINAL, limit),
                )
                found.extend((row[0], "age") for row in rows)
            if keep_per_template is not None and len(found) < limit:
                seen = {agent_id for agent_id, _ in found}
                templates = [row[0] for row in conn.execute("SELECT DISTINCT template_name FROM agents")]
                for template in templates:
                    rows = conn.execute(
                        "SELECT id FROM agents WHERE template_name = ? AND state >= ? "
                        "ORDER BY create_us DESC, id DESC LIMIT ? OFFSET ?",
                        (template, _TERMINAL, limit - len(found), keep_per_template),
                    )
                    found.extend((row[0], "count") for row in rows if row[0] not in seen)
                    if len(found) >= limit:
                        break
            return found[:limit]

        return await asyncio.to_thread(self._on_retention_connection, search)

    async def delete_expired(self, ids: Sequence[str], now_us: int) -> int:
        marks = ", ".join("?" * len(ids))

        def op(conn: sqlite3.Connection) -> int:
            # Only agents still finished: nothing a retention search saw can have become unfinished, but
            # the check costs nothing and keeps "never an unfinished agent" true by construction.
            gone = [
                row[0]
                for row in conn.execute(
                    f"SELECT id FROM agents WHERE id IN ({marks}) AND state >= ?", (*ids, _TERMINAL)
                )
            ]
            if not gone:
                return 0
            gone_marks = ", ".join("?" * len(gone))
            conn.execute(f"DELETE FROM agents WHERE id IN ({gone_marks})", gone)
            conn.execute(f"DELETE FROM agent_labels WHERE id IN ({gone_marks})", gone)
            conn.executemany(
                "INSERT OR REPLACE INTO expired_agents (id, expired_us) VALUES (?, ?)", [(i, now_us) for i in gone]
            )
            return len(gone)

        if not ids:
            return 0
        with span("journal_write", op="expire", agents=len(ids)):
            return await self.submit(op)

    async def prune_tombstones(self, before_us: int, limit: int) -> int:
        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM expired_agents WHERE id IN "
                "(SELECT id FROM expired_agents WHERE expired_us < ? ORDER BY expired_us LIMIT ?)",
                (before_us, limit),
            )
            return cur.rowcount

        return await self.submit(op, atomic=True)

    async def tombstone_cutoff(self, keep: int) -> int | None:
        def search(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT expired_us FROM expired_agents ORDER BY expired_us DESC LIMIT 1 OFFSET ?", (keep,)
            ).fetchone()
            return None if row is None else row[0]

        return await asyncio.to_thread(self._on_retention_connection, search)

    async def expired_at(self, agent_id: str) -> int | None:
        row = self._reader.execute("SELECT expired_us FROM expired_agents WHERE id = ?", (agent_id,)).fetchone()
        return None if row is None else row[0]

    # --- ownership (one process owns every agent of an SQLite journal) ----------------------------

    async def take_over(self, limit: int = 500) -> builtins.list[Agent]:
        """The unfinished agents this process must now look after: all of them, once, at start (this
        journal has one writer, so nobody else can hold them); nothing afterwards."""
        if self._taken_over:
            return []
        self._taken_over = True
        return list(await self.unfinished())

    async def renew(self) -> int:
        """No leases to renew: the journal file is this process's alone."""
        return 0

    async def request_cancel(self, agent_id: str, reason: str) -> bool:
        """Every unfinished agent of this journal runs in this process, which cancels it directly."""
        return False

    async def cancel_requests(self) -> builtins.list[tuple[str, str]]:
        return []
