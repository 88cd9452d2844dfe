"""Backup and restore of a PostgreSQL-backed store: `pg_dump` in custom format plus a manifest to check.

    python -m services.common.pg_backup dump    DSN OUT.dump     # writes OUT.dump and OUT.dump.json
    python -m services.common.pg_backup restore DSN IN.dump      # into an empty database, then verifies

The manifest holds the dump's SHA-256, each component's schema version and every table's row count, read
in the very snapshot pg_dump dumps (a REPEATABLE READ transaction exports it, counts, and stays open while
`pg_dump --snapshot` runs), so writes going on meanwhile never make a good backup look wrong. Restore
refuses a dump whose digest does not match, restores with `pg_restore --single-transaction` (all or
nothing) and checks that the schema versions and row counts are the manifest's. A store may add checks of
its own on top (the registry's would re-verify digests and signatures).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from mesh.pglocal import bin_dir


class RestoreError(Exception):
    """A dump or restore that failed or did not verify."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def _count(conn: asyncpg.Connection) -> dict[str, Any]:
    tables = [r[0] for r in await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]  # fmt: skip
    counts = {t: int(await conn.fetchval(f'SELECT COUNT(*) FROM "{t}"')) for t in tables}
    versions = {}
    if "schema_migrations" in tables:
        rows = await conn.fetch("SELECT component, MAX(version) FROM schema_migrations GROUP BY component")
        versions = {r[0]: int(r[1]) for r in rows}
    return {"schema_versions": versions, "rows": counts}


async def inventory(dsn: str) -> dict[str, Any]:
    """Schema versions per component and row counts per table of the public schema."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await _count(conn)
    finally:
        await conn.close()


async def _dump(dsn: str, out: Path) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            counted = await _count(conn)
            proc = await asyncio.create_subprocess_exec(
                str(bin_dir() / "pg_dump"), "--format=custom", "--no-owner", f"--snapshot={snapshot}",
                f"--file={out}", f"--dbname={dsn}", stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise RestoreError(f"pg_dump failed: {err.decode(errors='replace')[-2000:]}")
    finally:
        await conn.close()
    return counted


def dump(dsn: str, out: Path) -> dict[str, Any]:
    counted = asyncio.run(_dump(dsn, out))
    manifest = {"format": "pg_dump-custom", "sha256": _sha256(out), **counted}
    Path(f"{out}.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def restore(dsn: str, source: Path) -> dict[str, Any]:
    manifest = json.loads(Path(f"{source}.json").read_text())
    actual = _sha256(source)
    if actual != manifest["sha256"]:
        raise RestoreError(f"{source} does not match its manifest (sha256 {actual}, recorded {manifest['sha256']})")
    done = subprocess.run(
        [str(bin_dir() / "pg_restore"), "--single-transaction", "--no-owner", "--exit-on-error",
         f"--dbname={dsn}", str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RestoreError(f"pg_restore failed: {done.stderr[-2000:]}")
    after = asyncio.run(inventory(dsn))
    for key in ("schema_versions", "rows"):
        if after[key] != manifest[key]:
            raise RestoreError(f"restored {key} {after[key]} differ from the backup's {manifest[key]}")
    return after


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("dump", "restore"):
        print(__doc__, file=sys.stderr)
        return 2
    command, dsn, path = argv
    try:
        result = dump(dsn, Path(path)) if command == "dump" else restore(dsn, Path(path))
    except (RestoreError, subprocess.CalledProcessError, OSError) as exc:
        print(f"pg_backup {command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
