"""PostgreSQL plumbing shared by the stores that can run on it: a connection pool, versioned SQL
migrations, and the one place where driver errors become domain errors.

Driver: asyncpg. On the scheduler journal's write pattern (one INSERT or UPDATE per call, many calls in
flight) it was measured faster than psycopg 3 here, and it speaks asyncio natively (perf/BACKENDS.md).

Migrations: each store owns a folder of `NNNN_name.sql` files, applied in order, each in its own
transaction, and recorded in `schema_migrations (component, version)`. Replicas starting at once take a
session advisory lock per component first, so exactly one applies a migration and the others then see it
recorded. Plain SQL except for the advisory lock (CockroachDB lacks it; there, run `migrate` from one job
before the replicas start: the component's rows make it a no-op for them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from services.common.errors import Unavailable
from services.common.logs import log_event

log = logging.getLogger(__name__)
T = TypeVar("T")

_MIGRATION_RE = re.compile(r"\A([0-9]{4})_([a-z0-9_]+)\.sql\Z")

# Errors that mean "the database is not there right now", not "this statement is wrong": the caller gets
# UNAVAILABLE and may retry; the pool replaces broken connections by itself.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    TimeoutError,  # command_timeout: a server that stopped answering
    OSError,
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.QueryCanceledError,
    # Raised by a pooled connection whose server went away mid-operation ("cannot switch to state ...;
    # another operation is in progress" while the pool resets it): the connection is gone, not the query.
    asyncpg.InternalClientError,
)


def is_unreachable(exc: BaseException) -> bool:
    return isinstance(exc, _UNREACHABLE)


@contextlib.contextmanager
def unavailable_on_outage(what: str) -> Any:
    """Turn a lost or refused connection into Unavailable (never INTERNAL): the client retries."""
    try:
        yield
    except _UNREACHABLE as exc:
        raise Unavailable(f"{what}: the database is unreachable ({type(exc).__name__}); retry") from exc


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(folder: Path) -> list[Migration]:
    """The folder's NNNN_name.sql files in order; versions must be 1, 2, 3, ... with no gap."""
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_RE.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path.name}: migration files are named NNNN_lower_case_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise ValueError(f"{folder}: migration {expected:04d} is missing (found {migration.version:04d})")
    return found


_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""


def _lock_key(component: str) -> int:
    # A stable signed 64-bit key per component, so the registry's and the scheduler's migrations do not
    # wait for each other.
    return int.from_bytes(hashlib.sha256(f"agentfactory:{component}".encode()).digest()[:8], "big", signed=True)


async def migrate(conn: asyncpg.Connection, component: str, migrations: Sequence[Migration]) -> list[int]:
    """Apply the migrations `conn`'s database lacks; returns the versions applied now. Refuses a database
    whose schema is newer than this code or whose applied migration files were edited afterwards."""
    await conn.execute("SELECT pg_advisory_lock($1)", _lock_key(component))
    try:
        # Only when missing: CREATE ... IF NOT EXISTS still needs the CREATE privilege, and a serving role
        # with row privileges only (docs/database.md) must start on an up-to-date schema.
        if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
            await conn.execute(_LEDGER)
        rows = await conn.fetch(
            "SELECT version, checksum FROM schema_migrations WHERE component = $1 ORDER BY version", component
        )
        applied = {row["version"]: row["checksum"] for row in rows}
        known = {m.version: m for m in migrations}
        newer = sorted(v for v in applied if v not in known)
        if newer:
            raise RuntimeError(
                f"the database's {component} schema is at version {newer[-1]}, newer than this code's "
                f"{len(migrations)}; run a newer release or restore a backup"
            )
        for version, checksum in applied.items():
            if known[version].checksum != checksum:
                raise RuntimeError(
                    f"{component} migration {version:04d}_{known[version].name} was edited after it was applied; "
                    "add a new migration instead"
                )
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (component, version, name, checksum) VALUES ($1, $2, $3, $4)",
                    component,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            done.append(migration.version)
            log_event(log, "applied a schema migration", component=component, version=migration.version,
                      name=migration.name)  # fmt: skip
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _lock_key(component))


async def schema_version(conn: asyncpg.Connection, component: str) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    value = await conn.fetchval("SELECT MAX(version) FROM schema_migrations WHERE component = $1", component)
    return int(value or 0)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    command_timeout: float = 10.0,
    init: Callable[[asyncpg.Connection], Any] | None = None,
) -> asyncpg.Pool:
    """A pool whose connections use prepared statements (asyncpg caches them per connection), so a hot
    statement is parsed and planned once per connection, not once per call."""
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        init=init,
        # Dead connections (a restarted server) are dropped from the pool instead of handed out again.
        max_inactive_connection_lifetime=60.0,
    )


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool, what: str) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; an outage while acquiring or using it surfaces as Unavailable."""
    with unavailable_on_outage(what):
        async with pool.acquire() as conn:
            yield conn  # type: ignore[misc]  # a pool's proxy forwards every Connection method; the stubs type it apart


class BlockingPool:
    """An asyncpg pool for code that blocks by design (the registry store runs in worker threads): the pool
    lives on a private event loop in its own thread, and `call()` runs a coroutine there and waits. Safe
    from any thread, including before or outside the service's own event loop."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8, what: str = "the database") -> None:
        self.what = what
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-blocking", daemon=True)
        self._thread.start()
        self._pool: asyncpg.Pool = self._submit(create_pool(dsn, min_size=min_size, max_size=max_size))

    def _submit(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def call(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """fn(connection) on a pooled connection; an outage surfaces as Unavailable."""

        async def run() -> T:
            async with connection(self._pool, self.what) as conn:
                return await fn(conn)

        return self._submit(run())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._submit(self._pool.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
