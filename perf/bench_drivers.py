"""asyncpg vs psycopg 3 (async, psycopg-pool) on the scheduler journal's write pattern: one INSERT ... ON
CONFLICT and three UPDATEs per agent, 32 agents in flight, a pool of 10, prepared statements in both.
Prints client CPU per agent and agents/s (perf/BACKENDS.md). psycopg is not a dependency of the project:

    .venv/bin/pip install 'psycopg[binary,pool]==3.3.*'
    .venv/bin/python -m perf.bench_drivers postgresql://...
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import psycopg_pool
import uvloop

DDL = (
    "DROP TABLE IF EXISTS drv; "
    "CREATE TABLE drv (id text primary key, request_id text unique, state int, output bytea, n int)"
)
INSERT = "INSERT INTO drv VALUES ({0}, {1}, 1, ''::bytea, 0) ON CONFLICT (request_id) DO NOTHING"
UPDATE = "UPDATE drv SET state = {0}, output = {1}, n = n + 1 WHERE id = {2}"
AGENTS, IN_FLIGHT = 3000, 32


async def _measure(one: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def bounded() -> None:
        async with sem:
            await one()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(bounded() for _ in range(AGENTS)))
    return (time.process_time() - cpu) / AGENTS * 1000, AGENTS / (time.perf_counter() - wall)


async def run_asyncpg(dsn: str) -> tuple[float, float]:
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
    await pool.execute(DDL)
    insert, update = INSERT.format("$1", "$2"), UPDATE.format("$2", "$3", "$1")

    async def one() -> None:
        key = uuid.uuid4().hex
        async with pool.acquire() as conn:
            await conn.execute(insert, key, key)
        for state in (2, 2, 3):
            async with pool.acquire() as conn:
                await conn.execute(update, key, state, b"x" * 64)

    try:
        return await _measure(one)
    finally:
        await pool.close()


async def run_psycopg(dsn: str) -> tuple[float, float]:
    pool = psycopg_pool.AsyncConnectionPool(dsn, min_size=10, max_size=10, open=False, kwargs={"autocommit": True})
    await pool.open()
    async with pool.connection() as conn:
        await conn.execute(DDL)
    insert, update = INSERT.format("%s", "%s"), UPDATE.format("%s", "%s", "%s")

    async def one() -> None:
        key = uuid.uuid4().hex
        async with pool.connection() as conn:
            await conn.execute(insert, (key, key), prepare=True)
        for state in (2, 2, 3):
            async with pool.connection() as conn:
                await conn.execute(update, (state, b"x" * 64, key), prepare=True)

    try:
        return await _measure(one)
    finally:
        await pool.close()


def main() -> None:
    dsn = sys.argv[1]
    for _ in range(2):
        for name, run in (("asyncpg", run_asyncpg), ("psycopg", run_psycopg)):
            cpu, rate = uvloop.run(run(dsn))
            print(f"{name}: client CPU {cpu:.3f} ms per agent (1 INSERT + 3 UPDATE), {rate:.0f} agents/s")


if __name__ == "__main__":
    main()
