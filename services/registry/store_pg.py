"""The registry store on PostgreSQL, shared by any number of registry replicas (AF_DATABASE_URL).

The same blocking interface as storage.RegistryStore (the registry calls it from worker threads), over
asyncpg on a private loop (services/common/postgres.BlockingPool). Everything lives in the database:
templates with their canonical manifest (zstd, as the embedded store's files, plus its SHA-256, checked
on every read), labels, signatures, signing keys, events, and module blobs as 1 MiB `bytea` chunks.

- Publish is atomic across replicas: the template's primary key admits one row per name@version; the
  replica that loses the race gets PublishRace and answers as for any existing version.
- Revisions are gapless and commit in order: every writing transaction takes the single counter row
  FOR UPDATE, so a replica following `events_after(N)` (services/registry/watch_feed.py) never misses one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import asyncpg
import zstandard

from services.common import postgres
from services.common.errors import DataLoss, NotFound
from services.common.logs import log_event
from services.registry.storage import (
    KIND_DEPRECATED,
    KIND_PUBLISHED,
    MAX_CANONICAL_BYTES,
    ZSTD_LEVEL,
    EventRow,
    HashingUpload,
    ListCursor,
    PublishRace,
    TemplateColumns,
    bounded_decompress,
    template_columns,
)
from services.registry.stored import stored_template
from services.templates.published import PublishedTemplate
from services.templates.signature import PublicKeyVersion, SignatureRecord, fingerprint

log = logging.getLogger(__name__)

COMPONENT = "registry"
MIGRATIONS = Path(__file__).with_name("migrations")
CHUNK_BYTES = 1024 * 1024
_COLUMNS = (
    "name, version, manifest_sha256, manifest_zst, module_size, key_id, key_version, signature, deprecated, "
    "deprecation_reason, revision, publish_time, key_fingerprint"
)
# A new template row: the columns both stores derive alike, then manifest_zst, revision, both times.
_NEW = len(TemplateColumns._fields)
INSERT_TEMPLATE = (
    f"INSERT INTO templates ({', '.join(TemplateColumns._fields)}, manifest_zst, revision, publish_time, update_time) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, _NEW + 4))}, ${_NEW + 3})"
)


class PgBlobWriter(HashingUpload):
    """Receives a module in pieces into an anonymous temp file, hashing as it goes; commit() stores it."""

    def __init__(self, store: PgRegistryStore) -> None:
        self._store = store
        super().__init__(tempfile.TemporaryFile())  # noqa: SIM115 — closed by commit()/discard()

    def read_back(self) -> bytes:
        self._handle.flush()
        self._handle.seek(0)
        data = self._handle.read()
        self._handle.seek(0, 2)
        return data

    def commit(self) -> str:
        """Store the chunks under the digest (once: the same digest is the same bytes)."""
        digest, size = self.sha256, self.size
        self._handle.seek(0)
        chunks = []
        while piece := self._handle.read(CHUNK_BYTES):
            chunks.append(piece)
        self._handle.close()

        async def store(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                inserted = await conn.fetchval(
                    "INSERT INTO modules (sha256, size) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING RETURNING 1",
                    digest,
                    size,
                )
                if inserted:
                    await conn.executemany(
                        "INSERT INTO module_chunks (sha256, idx, data) VALUES ($1, $2, $3)",
                        [(digest, i, chunk) for i, chunk in enumerate(chunks)],
                    )

        self._store.db.call(store)
        return digest

    def discard(self) -> None:
        if not self._handle.closed:
            self._handle.close()


class PgRegistryStore:
    shared = True  # other replicas write too: watch events come from the database (watch_feed.py)

    def __init__(self, dsn: str, pool_size: int = 8) -> None:
        self.db = postgres.BlockingPool(dsn, max_size=pool_size, what="the registry database")
        try:
            migrations = postgres.load_migrations(MIGRATIONS)

            async def migrate(conn: asyncpg.Connection) -> None:
                await postgres.migrate(conn, COMPONENT, migrations)

            self.db.call(migrate)
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    # --- health and housekeeping ------------------------------------------------------------------

    def check_writable(self) -> None:
        async def probe(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("SELECT value FROM registry_revision FOR UPDATE NOWAIT")

        with contextlib.suppress(asyncpg.LockNotAvailableError):  # another replica is writing: writable
            self.db.call(probe)

    def sweep(self) -> dict[str, int]:
        """Nothing to sweep: a publish is one transaction, and an upload in flight is a temp file."""
        return {}

    # --- blobs ------------------------------------------------------------------------------------

    def new_blob(self) -> PgBlobWriter:
        return PgBlobWriter(self)

    def has_blob(self, digest: str) -> bool:
        return bool(self.db.call(lambda c: c.fetchval("SELECT 1 FROM modules WHERE sha256 = $1", digest)))

    def blob_size(self, digest: str) -> int:
        size = self.db.call(lambda c: c.fetchval("SELECT size FROM modules WHERE sha256 = $1", digest))
        if size is None:
            raise NotFound(f"module {digest} is not stored")
        return int(size)

    def blob_referenced(self, digest: str) -> bool:
        query = (
            "SELECT 1 FROM templates WHERE module_sha256 = $1 UNION ALL SELECT 1 FROM template_files WHERE sha256 = $1 "
            "LIMIT 1"
        )
        return bool(self.db.call(lambda c: c.fetchval(query, digest)))

    def open_blob(self, digest: str) -> IO[bytes]:
        """A module that a published template references, as a file (anonymous, so fstat gives its size)."""
        if not self.blob_referenced(digest):
            raise NotFound(f"no published template references module {digest}")

        async def read(conn: asyncpg.Connection) -> list[bytes]:
            rows = await conn.fetch("SELECT data FROM module_chunks WHERE sha256 = $1 ORDER BY idx", digest)
            return [bytes(r["data"]) for r in rows]

        handle = tempfile.TemporaryFile()  # noqa: SIM115 — the caller closes it
        for chunk in self.db.call(read):
            handle.write(chunk)
        handle.seek(0)
        return handle

    # --- templates --------------------------------------------------------------------------------

    def _row_to_template(self, row: asyncpg.Record) -> PublishedTemplate:
        name, version = row["name"], row["version"]
        what = f"stored manifest {name}@{version}"
        canonical = bounded_decompress(bytes(row["manifest_zst"]), MAX_CANONICAL_BYTES, what)
        actual = hashlib.sha256(canonical).hexdigest()
        if actual != row["manifest_sha256"]:
            log_event(log, "stored manifest failed its integrity check", level=logging.ERROR, template=name)
            raise DataLoss(f"{what} does not match its recorded sha256 (found {actual}); it was altered")
        return stored_template(
            name,
            version,
            canonical,
            SignatureRecord(
                key_id=row["key_id"],
                key_version=row["key_version"],
                signature=bytes(row["signature"]),
                key_fingerprint=row["key_fingerprint"],
            ),
            module_size=row["module_size"],
            revision=row["revision"],
            publish_time=row["publish_time"],
            deprecated=row["deprecated"],
            deprecation_reason=row["deprecation_reason"],
        )

    def get(self, name: str, version: str) -> PublishedTemplate | None:
        query = f"SELECT {_COLUMNS} FROM templates WHERE name = $1 AND version = $2"
        row = self.db.call(lambda c: c.fetchrow(query, name, version))
        return None if row is None else self._row_to_template(row)

    def latest_version(self, name: str) -> str | None:
        query = (
            "SELECT version FROM templates WHERE name = $1 AND NOT deprecated "
            "ORDER BY sort_key DESC, version DESC LIMIT 1"
        )
        version: str | None = self.db.call(lambda c: c.fetchval(query, name))
        return version

    def has_name(self, name: str) -> bool:
        return bool(self.db.call(lambda c: c.fetchval("SELECT 1 FROM templates WHERE name = $1 LIMIT 1", name)))

    def list_refs(
        self,
        name: str,
        labels: Sequence[tuple[str, str]],
        include_deprecated: bool,
        after: ListCursor | None,
        limit: int,
    ) -> list[ListCursor]:
        """One page of (name, sort_key, version) positions, by name then newest version first."""
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if name:
            where.append(f"t.name = {arg(name)}")
        if not include_deprecated:
            where.append("NOT t.deprecated")
        for key, value in labels:
            where.append(
                "EXISTS (SELECT 1 FROM labels l WHERE l.name = t.name AND l.version = t.version "
                f"AND l.key = {arg(key)} AND l.value = {arg(value)})"
            )
        if after is not None:
            n, k, v = arg(after.name), arg(after.sort_key), arg(after.version)
            where.append(
                f"(t.name > {n} OR (t.name = {n} AND (t.sort_key < {k} OR (t.sort_key = {k} AND t.version < {v}))))"
            )
        sql = "SELECT t.name, t.sort_key, t.version FROM templates t"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY t.name ASC, t.sort_key DESC, t.version DESC LIMIT {arg(limit)}"
        rows = self.db.call(lambda c: c.fetch(sql, *args))
        return [ListCursor(r[0], r[1], r[2]) for r in rows]

    @staticmethod
    async def _next_revision(conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval("UPDATE registry_revision SET value = value + 1 RETURNING value"))

    def insert(self, template: PublishedTemplate) -> PublishedTemplate:
        """Store a new template, its labels and its event in one transaction; PublishRace if another
        replica stored this name@version first."""
        manifest = template.manifest
        canonical = template.canonical_manifest
        compressed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(canonical)
        now = time.time()

        async def write(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                revision = await self._next_revision(conn)
                await conn.execute(
                    "INSERT INTO events (revision, kind, name, version, event_time) VALUES ($1, $2, $3, $4, $5)",
                    revision, KIND_PUBLISHED, manifest.name, manifest.version, now,
                )  # fmt: skip
                await conn.execute(INSERT_TEMPLATE, *template_columns(template), compressed, revision, now)
                await conn.executemany(
                    "INSERT INTO labels (name, version, key, value) VALUES ($1, $2, $3, $4)",
                    [(manifest.name, manifest.version, k, v) for k, v in manifest.labels.items()],
                )
                await conn.executemany(
                    "INSERT INTO template_files (name, version, path, sha256) VALUES ($1, $2, $3, $4)",
                    [(manifest.name, manifest.version, path, f.sha256) for path, f in manifest.files.items()],
                )
                return revision

        try:
            revision = self.db.call(write)
        except asyncpg.UniqueViolationError as exc:
            raise PublishRace(f"template {manifest.name}@{manifest.version} is already published") from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFound(
                f"a module or file blob of {manifest.ref} is not stored; upload it with the manifest"
            ) from exc
        return replace(template, revision=revision, publish_time=now)

    def deprecate(self, name: str, version: str, reason: str) -> int | None:
        """Mark deprecated and record the event in one transaction; None if it already was."""
        now = time.time()

        async def write(conn: asyncpg.Connection) -> int | None:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT deprecated FROM templates WHERE name = $1 AND version = $2 FOR UPDATE", name, version
                )
                if row is None:
                    raise NotFound(f"template {name}@{version} is not published")
                if row["deprecated"]:
                    return None
                revision = await self._next_revision(conn)
                await conn.execute(
                    "INSERT INTO events (revision, kind, name, version, event_time) VALUES ($1, $2, $3, $4, $5)",
                    revision, KIND_DEPRECATED, name, version, now,
                )  # fmt: skip
                await conn.execute(
                    "UPDATE templates SET deprecated = TRUE, deprecation_reason = $1, update_time = $2 "
                    "WHERE name = $3 AND version = $4",
                    reason, now, name, version,
                )  # fmt: skip
                return revision

        return self.db.call(write)

    def update_signature(self, name: str, version: str, signature: SignatureRecord) -> int:
        """Replace a template's signature (a re-sign) and record a 'published' event, in one transaction."""
        now = time.time()

        async def write(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                status = await conn.execute(
                    "UPDATE templates SET key_id = $1, key_version = $2, signature = $3, key_fingerprint = $4, "
                    "update_time = $5 WHERE name = $6 AND version = $7",
                    signature.key_id, signature.key_version, signature.signature, signature.key_fingerprint, now,
                    name, version,
                )  # fmt: skip
                if status != "UPDATE 1":
                    raise NotFound(f"template {name}@{version} is not published")
                revision = await self._next_revision(conn)
                await conn.execute(
                    "INSERT INTO events (revision, kind, name, version, event_time) VALUES ($1, $2, $3, $4, $5)",
                    revision, KIND_PUBLISHED, name, version, now,
                )  # fmt: skip
                return revision

        return self.db.call(write)

    def all_refs(self, after: tuple[str, str] | None, limit: int) -> list[tuple[str, str]]:
        name, version = after or ("", "")
        query = (
            "SELECT name, version FROM templates WHERE name > $1 OR (name = $1 AND version > $2) "
            "ORDER BY name, version LIMIT $3"
        )
        rows = self.db.call(lambda c: c.fetch(query, name, version, limit))
        return [(r[0], r[1]) for r in rows]

    # --- signing keys -----------------------------------------------------------------------------

    def record_keys(self, keys: Sequence[PublicKeyVersion], min_versions: dict[str, int]) -> None:
        now = time.time()

        async def write(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO signing_keys (key_id, key_version, public_key_pem, fingerprint, first_seen) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id, key_version) DO NOTHING",
                    [(k.key_id, k.key_version, k.public_key_pem, fingerprint(k.public_key_pem), now) for k in keys],
                )
                await conn.executemany(
                    "UPDATE signing_keys SET revoked = TRUE WHERE key_id = $1 AND key_version < $2",
                    list(min_versions.items()),
                )

        self.db.call(write)

    def signing_keys(self) -> list[tuple[PublicKeyVersion, bool]]:
        query = (
            "SELECT key_id, key_version, public_key_pem, first_seen, revoked FROM signing_keys "
            "ORDER BY key_id, key_version"
        )
        rows = self.db.call(lambda c: c.fetch(query))
        return [(PublicKeyVersion(r[0], r[1], r[2], r[3]), bool(r[4])) for r in rows]

    # --- events -----------------------------------------------------------------------------------

    def events_after(self, revision: int, limit: int) -> list[EventRow]:
        query = "SELECT revision, kind, name, version FROM events WHERE revision > $1 ORDER BY revision LIMIT $2"
        rows = self.db.call(lambda c: c.fetch(query, revision, limit))
        return [EventRow(r[0], r[1], r[2], r[3]) for r in rows]

    def current_revision(self) -> int:
        return int(self.db.call(lambda c: c.fetchval("SELECT value FROM registry_revision")))
