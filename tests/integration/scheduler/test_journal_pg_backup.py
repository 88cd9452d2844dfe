"""The restore drill for the PostgreSQL journal: pg_dump while agents are being written, restore into an
empty database, the journal opens on it (schema as recorded) with every agent of the dump; a damaged dump
is refused before anything is restored."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import pytest

from mesh.pglocal import LocalPostgres
from services.common import pg_backup
from services.scheduler import domain
from services.scheduler.domain import CreateSpec, ListFilter, TemplateInfo
from services.scheduler.journal_pg import PgJournal
from tests.postgres import _with_database, pg_dsn, postgres_server  # noqa: F401 — fixtures

TEMPLATE = TemplateInfo("echo", "1.0.0", retryable=False, timeout_ms=1000)


def agent(i: int) -> domain.Agent:
    spec = CreateSpec("echo", input=f"in {i}".encode(), labels={"n": str(i % 3)}, request_id=f"r{i}")
    return domain.new_agent(f"agent-{i:04d}", spec, TEMPLATE, now=1_700_000_000.0 + i, deadline=None)


async def _fill(dsn: str, count: int) -> list[domain.Agent]:
    journal = await PgJournal.open(dsn, owner="writer")
    try:
        return [(await journal.create(agent(i)))[0] for i in range(count)]
    finally:
        await journal.close()


async def _keep_writing(dsn: str, stop: threading.Event) -> None:
    journal = await PgJournal.open(dsn, owner="busy")
    try:
        i = 1000
        while not stop.is_set():
            await journal.create(agent(i))
            i += 1
    finally:
        await journal.close()


async def _read_all(dsn: str) -> list[domain.Agent]:
    journal = await PgJournal.open(dsn, owner="reader")
    try:
        return await journal.list(ListFilter(), None, 100_000)
    finally:
        await journal.close()


def test_dump_restore_drill(pg_dsn: str, postgres_server: LocalPostgres, tmp_path: Path) -> None:  # noqa: F811
    asyncio.run(_fill(pg_dsn, 40))
    backup = tmp_path / "journal.dump"
    stop = threading.Event()
    writer = threading.Thread(target=lambda: asyncio.run(_keep_writing(pg_dsn, stop)))
    writer.start()  # a backup taken under load must still verify
    try:
        manifest = pg_backup.dump(pg_dsn, backup)
    finally:
        stop.set()
        writer.join()
    assert manifest["rows"]["agents"] >= 40 and manifest["schema_versions"]["scheduler"] >= 2

    target = f"t_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f"CREATE DATABASE {target}")
    restored_dsn = _with_database(postgres_server.dsn, target)
    try:
        after = pg_backup.restore(restored_dsn, backup)
        assert after["rows"] == manifest["rows"]
        back = asyncio.run(_read_all(restored_dsn))  # migrations find the schema current: a no-op
        assert len(back) == manifest["rows"]["agents"]
        assert all(a.input == f"in {int(a.id.split('-')[1])}".encode() for a in back)
    finally:
        postgres_server.psql(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")


def test_a_damaged_dump_is_refused_before_restoring(pg_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    asyncio.run(_fill(pg_dsn, 3))
    backup = tmp_path / "journal.dump"
    pg_backup.dump(pg_dsn, backup)
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 0xFF
    backup.write_bytes(bytes(data))
    with pytest.raises(pg_backup.RestoreError, match="does not match its manifest"):
        pg_backup.restore(pg_dsn, backup)
