"""The registry's PostgreSQL restore drill: templates published through a real registry (real signer),
pg_dump under the registry, restore into an empty database, then every manifest digest, signature and
module digest checks (services/registry/verify_store.py); tampering in the restored copy is caught."""

from __future__ import annotations

import uuid
from pathlib import Path

from mesh.pglocal import LocalPostgres
from services.common import pg_backup
from services.registry import store_pg
from services.registry.store_pg import PgRegistryStore
from services.registry.verify_store import verify_store
from tests.harness import ServiceProcess
from tests.integration.registry.conftest import Client, fresh_registry, manifest, padded_wasm
from tests.postgres import _with_database, pg_dsn, postgres_server  # noqa: F401 — fixtures


def test_dump_restore_and_verify(
    tmp_path: Path,
    signer: ServiceProcess,
    pg_dsn: str,  # noqa: F811
    postgres_server: LocalPostgres,  # noqa: F811
) -> None:
    with fresh_registry(tmp_path / "registry", signer.addr, AF_DATABASE_URL=pg_dsn) as proc:
        client = Client(proc.addr, signer.addr)
        try:
            client.publish(manifest("drill-a"))
            client.publish(manifest("drill-a", version="1.1.0"))
            client.publish(manifest("drill-big"), module=padded_wasm(2_300_000))
        finally:
            client.close()
    backup = tmp_path / "registry.dump"
    dumped = pg_backup.dump(pg_dsn, backup)
    newest = len(list(store_pg.MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.sql")))  # the schema a fresh store reaches
    assert dumped["rows"]["templates"] == 3 and dumped["schema_versions"]["registry"] == newest

    target = f"t_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f"CREATE DATABASE {target}")
    restored = _with_database(postgres_server.dsn, target)
    try:
        pg_backup.restore(restored, backup)
        store = PgRegistryStore(restored)
        try:
            report = verify_store(store)
            assert report["problems"] == [] and (report["templates"], report["modules"]) == (3, 2), report
        finally:
            store.close()
        # Tamper with the restored copy: one signature, one module chunk.
        postgres_server.psql(
            "UPDATE templates SET signature = decode(repeat('00', 256), 'hex') WHERE version = '1.1.0'", target
        )
        postgres_server.psql(
            "UPDATE module_chunks SET data = decode('ff', 'hex') || substring(data from 2) "
            "WHERE idx = 1 AND sha256 IN (SELECT module_sha256 FROM templates WHERE name = 'drill-big')",
            target,
        )
        store = PgRegistryStore(restored)
        try:
            problems = verify_store(store)["problems"]
        finally:
            store.close()
        assert len(problems) == 2, problems
        assert any("drill-a@1.1.0" in p for p in problems) and any("drill-big@1.0.0" in p for p in problems)
    finally:
        postgres_server.psql(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
