"""The embedded registry store: SQLite metadata, zstd manifests and content-addressed module blobs.

Layout under the data directory:

    registry.db                              SQLite (WAL): templates, labels, events, meta
    manifests/<name>/<version>.json.zst      canonical (signed) manifest bytes, zstd-compressed
    blobs/sha256/<aa>/<digest>               module bytes, named by their SHA-256
    tmp/                                     uploads in flight; emptied at start

Crash safety: files are written to tmp, fsynced and renamed into place *before* the single SQLite
transaction that commits the template row, its labels and its event. A crash before that commit
leaves only unreferenced files (swept at start); after it, everything the row points to is durable.

Integrity: SQLite holds the SHA-256 of every stored manifest; reading a manifest decompresses with a
window limit and an output bound and checks that digest, so a flipped byte or a decompression bomb
on disk is reported as DATA_LOSS instead of being served. Module blobs are checked by FetchModule
(see registry.py) as they stream.

Thread-safety: one connection guarded by a lock; callers run methods in worker threads.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, NamedTuple

import zstandard

from services.common import listing
from services.common.errors import AlreadyExists, DataLoss, InvalidArgument, NotFound
from services.common.files import fsync_dir, write_durably
from services.common.logs import log_event
from services.registry.stored import stored_template
from services.templates.manifest import SHA256_RE
from services.templates.published import PublishedTemplate
from services.templates.semver import Version
from services.templates.signature import PublicKeyVersion, SignatureRecord, fingerprint

log = logging.getLogger(__name__)

DB_NAME = "registry.db"
SCHEMA_VERSION = 1
# The signer accepts payloads up to 1 MiB, so no stored canonical manifest can be larger.
MAX_CANONICAL_BYTES = 1024 * 1024
ZSTD_LEVEL = 3
# Frames we write never need more (the compressor picks a window no larger than the input);
# a stored frame that asks for more is corrupt or hostile.
ZSTD_MAX_WINDOW = 1 << 20
KIND_PUBLISHED = "published"
KIND_DEPRECATED = "deprecated"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('published', 'deprecated')),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    event_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    sort_key TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    module_sha256 TEXT NOT NULL,
    module_size INTEGER NOT NULL,
    labels_json TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    signature BLOB NOT NULL,
    key_fingerprint TEXT NOT NULL DEFAULT '',
    deprecated INTEGER NOT NULL DEFAULT 0,
    deprecation_reason TEXT NOT NULL DEFAULT '',
    revision INTEGER NOT NULL,
    publish_time REAL NOT NULL,
    update_time REAL NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS templates_order ON templates (name, sort_key DESC, version DESC);
CREATE INDEX IF NOT EXISTS templates_module ON templates (module_sha256);
CREATE TABLE IF NOT EXISTS labels (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, version, key),
    FOREIGN KEY (name, version) REFERENCES templates (name, version)
);
CREATE INDEX IF NOT EXISTS labels_kv ON labels (key, value);
-- Read-only files a template ships (manifest `files`): their bytes are blobs like modules, so a blob is
-- kept (sweep), served (FetchModule) and backed up while any template references it either way.
CREATE TABLE IF NOT EXISTS template_files (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (name, version, path),
    FOREIGN KEY (name, version) REFERENCES templates (name, version)
);
CREATE INDEX IF NOT EXISTS template_files_blob ON template_files (sha256);
CREATE TABLE IF NOT EXISTS signing_keys (
    key_id TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    public_key_pem TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL,
    PRIMARY KEY (key_id, key_version)
);
"""

# Every blob a committed template references: its module and its files.
_REFERENCED_BLOBS = "SELECT module_sha256 FROM templates UNION SELECT sha256 FROM template_files"


def _inserted_rowid(cursor: sqlite3.Cursor) -> int:
    """The rowid of the row an INSERT on `cursor` just made (sqlite3 leaves lastrowid None only before one)."""
    rowid = cursor.lastrowid
    if rowid is None:
        raise RuntimeError("an INSERT left no rowid")
    return rowid


class PublishRace(AlreadyExists):
    """Another writer stored this name@version between the registry's check and its insert (only a store
    shared by several registry replicas can see this)."""


# --- version ordering in SQL ----------------------------------------------------------------------


def _num(digits: str) -> str:
    # Length-prefixed so that string order equals numeric order (semver forbids leading zeros).
    return f"{len(digits):03d}{digits}"


def sortable_version_key(text: str) -> str:
    """A string whose byte order is semver precedence (build metadata ignored), for ORDER BY."""
    version = Version(text)
    key = _num(str(version.major)) + _num(str(version.minor)) + _num(str(version.patch))
    if not version.prerelease:
        return key + "~"  # a release outranks all of its prereleases ("~" sorts above "!")
    parts = []
    for ident in version.prerelease:
        # Numeric identifiers rank below alphanumeric ones; " " ends each one so that a shorter
        # list of equal identifiers ranks lower, as SemVer 2.0.0 section 11 says.
        parts.append(("0" + _num(ident) if ident.isdigit() else "1" + ident) + " ")
    return key + "!" + "".join(parts)


class TemplateColumns(NamedTuple):
    """A new `templates` row's columns that both stores derive from the template the same way (each
    INSERT adds the revision and times, and PostgreSQL the compressed manifest), in this order."""

    name: str
    version: str
    sort_key: str
    manifest_sha256: str
    module_sha256: str
    module_size: int
    labels_json: str
    key_id: str
    key_version: int
    signature: bytes
    key_fingerprint: str


def template_columns(template: PublishedTemplate) -> TemplateColumns:
    manifest, signature = template.manifest, template.signature
    return TemplateColumns(
        manifest.name,
        manifest.version,
        sortable_version_key(manifest.version),
        hashlib.sha256(template.canonical_manifest).hexdigest(),
        manifest.module_sha256,
        template.module_size,
        json.dumps(dict(manifest.labels), sort_keys=True),
        signature.key_id,
        signature.key_version,
        signature.signature,
        signature.key_fingerprint,
    )


# A new template row: the columns both stores derive alike, then revision, publish and update time.
INSERT_TEMPLATE = (
    f"INSERT INTO templates ({', '.join(TemplateColumns._fields)}, revision, publish_time, update_time) "
    f"VALUES ({', '.join('?' * (len(TemplateColumns._fields) + 3))})"
)


# --- small file helpers ---------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes, tmp_dir: Path) -> None:
    """Write a tmp file in `tmp_dir`, fsync, rename into place, fsync the directory: whole or absent."""
    write_durably(path, data, tmp_dir / f"{uuid.uuid4().hex}.part")


def bounded_decompress(data: bytes, max_output: int, what: str) -> bytes:
    """Decompress one zstd frame, refusing windows above ZSTD_MAX_WINDOW and output above max_output."""
    reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(io.BytesIO(data))
    out = bytearray()
    try:
        while len(out) <= max_output:
            piece = reader.read(64 * 1024)
            if not piece:
                return bytes(out)
            out += piece
    except zstandard.ZstdError as exc:
        raise DataLoss(f"{what} is corrupt: {exc}") from exc
    raise DataLoss(f"{what} decompresses past {max_output} bytes; refusing it as corrupt or hostile")


# --- blobs ----------------------------------------------------------------------------------------


class HashingUpload:
    """An upload in flight, written to `handle` and hashed and counted as it goes (both stores' blob writers)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._handle.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class BlobWriter(HashingUpload):
    """Receives a module in pieces, hashing as it goes, into a temp file; commit() files it by digest."""

    def __init__(self, store: RegistryStore) -> None:
        self._store = store
        self._tmp = store.tmp_dir / f"{uuid.uuid4().hex}.upload"
        super().__init__(open(self._tmp, "wb"))  # noqa: SIM115 — closed by commit()/discard()

    def commit(self) -> str:
        """fsync and rename into blobs/sha256/<aa>/<digest>. Replacing an existing blob of the same
        digest is harmless (same bytes) and heals one that was damaged on disk."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        digest = self.sha256
        final = self._store.blob_path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, final)
        fsync_dir(final.parent)
        return digest

    def read_back(self) -> bytes:
        """Everything written so far (a module is at most the policy's module.max_bytes)."""
        self._handle.flush()
        return self._tmp.read_bytes()

    def discard(self) -> None:
        if not self._handle.closed:
            self._handle.close()
        self._tmp.unlink(missing_ok=True)


# --- the store ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRow:
    revision: int
    kind: str
    name: str
    version: str


@dataclass(frozen=True)
class ListCursor:
    """Position after the last template of a page: templates sort by name, then newest version first."""

    name: str
    sort_key: str
    version: str

    def encode(self, fingerprint: str) -> str:
        return listing.encode_page_token({"n": self.name, "s": self.sort_key, "v": self.version}, fingerprint)

    @classmethod
    def decode(cls, token: str, fingerprint: str) -> ListCursor:
        """InvalidArgument for a token this registry did not issue, or one issued for different filters."""
        position = listing.decode_page_token(token, fingerprint)
        name, sort_key, version = position.get("n"), position.get("s"), position.get("v")
        if not (isinstance(name, str) and isinstance(sort_key, str) and isinstance(version, str)):
            raise listing.not_issued()
        return cls(name, sort_key, version)


class RegistryStore:
    shared = False  # one process writes: its own hub sees every event

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self.manifests_dir = root / "manifests"
        self.blobs_dir = root / "blobs" / "sha256"
        for directory in (self.root, self.tmp_dir, self.manifests_dir, self.blobs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(root / DB_NAME, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed publish survives power loss
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(templates)")}
            if "key_fingerprint" not in columns:  # stores made before signatures carried the key's fingerprint
                self._db.execute("ALTER TABLE templates ADD COLUMN key_fingerprint TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- health and housekeeping ------------------------------------------------------------------

    def check_writable(self) -> None:
        """Raise OSError/sqlite3.Error unless both the files and the database accept writes."""
        write_atomic(self.tmp_dir / "write-probe", b"ok", self.tmp_dir)
        (self.tmp_dir / "write-probe").unlink()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_start', ?)", (str(time.time()),)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def sweep(self) -> dict[str, int]:
        """Remove what a crash can leave behind: uploads in flight, and files no committed row references.
        Call at start, before serving (nothing is in flight then)."""
        removed = {"tmp": 0, "blobs": 0, "manifests": 0}
        for path in self.tmp_dir.iterdir():
            path.unlink(missing_ok=True)
            removed["tmp"] += 1
        with self._lock:
            digests = {row[0] for row in self._db.execute(_REFERENCED_BLOBS)}
            refs = {(n, v) for n, v in self._db.execute("SELECT name, version FROM templates")}
        for path in self.blobs_dir.glob("*/*"):
            if path.name not in digests:
                path.unlink(missing_ok=True)
                removed["blobs"] += 1
        for path in self.manifests_dir.glob("*/*.json.zst"):
            if (path.parent.name, path.name.removesuffix(".json.zst")) not in refs:
                path.unlink(missing_ok=True)
                removed["manifests"] += 1
        if any(removed.values()):
            log_event(log, "swept files left by an interrupted publish", **removed)
        return removed

    # --- blobs ------------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        if not SHA256_RE.match(digest):
            raise InvalidArgument("sha256 must be 64 lower-case hex digits", field="sha256")
        return self.blobs_dir / digest[:2] / digest

    def new_blob(self) -> BlobWriter:
        return BlobWriter(self)

    def blob_size(self, digest: str) -> int:
        return self.blob_path(digest).stat().st_size

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def blob_referenced(self, digest: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM templates WHERE module_sha256 = ? "
                "UNION ALL SELECT 1 FROM template_files WHERE sha256 = ? LIMIT 1",
                (digest, digest),
            ).fetchone()
        return row is not None

    def open_blob(self, digest: str) -> io.BufferedReader:
        """Open a module that a published template references; NotFound otherwise."""
        path = self.blob_path(digest)
        if not self.blob_referenced(digest):
            raise NotFound(f"no published template references module {digest}")
        try:
            return open(path, "rb")
        except FileNotFoundError as exc:
            log_event(log, "module blob missing", level=logging.ERROR, sha256=digest, path=str(path))
            raise DataLoss(f"module {digest} is referenced but missing from disk; restore from a backup") from exc

    # --- manifests --------------------------------------------------------------------------------

    def manifest_path(self, name: str, version: str) -> Path:
        return self.manifests_dir / name / f"{version}.json.zst"

    def _read_manifest(self, name: str, version: str, expected_sha256: str) -> bytes:
        path = self.manifest_path(name, version)
        what = f"stored manifest {name}@{version} ({path})"
        try:
            compressed = path.read_bytes()
        except FileNotFoundError as exc:
            log_event(log, "manifest file missing", level=logging.ERROR, path=str(path))
            raise DataLoss(f"{what} is missing; restore from a backup") from exc
        try:
            canonical = bounded_decompress(compressed, MAX_CANONICAL_BYTES, what)
            actual = hashlib.sha256(canonical).hexdigest()
            if actual != expected_sha256:
                raise DataLoss(
                    f"{what} does not match its recorded sha256 (recorded {expected_sha256}, found {actual}); "
                    "it was altered on disk"
                )
        except DataLoss as exc:
            log_event(log, "stored manifest failed its integrity check", level=logging.ERROR, error=exc.message)
            raise
        return canonical

    # --- templates --------------------------------------------------------------------------------

    _COLUMNS = (
        "name, version, manifest_sha256, module_size, key_id, key_version, signature, deprecated, "
        "deprecation_reason, revision, publish_time, key_fingerprint"
    )

    def _row_to_template(self, row: Sequence[Any]) -> PublishedTemplate:
        name, version, manifest_sha256, module_size, key_id, key_version, signature, deprecated, reason = row[:9]
        revision, publish_time, key_fingerprint = row[9:12]
        return stored_template(
            name,
            version,
            self._read_manifest(name, version, manifest_sha256),
            SignatureRecord(
                key_id=key_id, key_version=key_version, signature=bytes(signature), key_fingerprint=key_fingerprint
            ),
            module_size=module_size,
            revision=revision,
            publish_time=publish_time,
            deprecated=bool(deprecated),
            deprecation_reason=reason,
        )

    def get(self, name: str, version: str) -> PublishedTemplate | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM templates WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
        return None if row is None else self._row_to_template(row)

    def latest_version(self, name: str) -> str | None:
        """The highest version by semver precedence that is not deprecated."""
        with self._lock:
            row = self._db.execute(
                "SELECT version FROM templates WHERE name = ? AND deprecated = 0 "
                "ORDER BY sort_key DESC, version DESC LIMIT 1",
                (name,),
            ).fetchone()
        return None if row is None else row[0]

    def has_name(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM templates WHERE name = ? LIMIT 1", (name,)).fetchone() is not None

    def list_refs(
        self,
        name: str,
        labels: Sequence[tuple[str, str]],
        include_deprecated: bool,
        after: ListCursor | None,
        limit: int,
    ) -> list[ListCursor]:
        """One page of (name, sort_key, version) positions, by name then newest version first."""
        where, args = [], []
        if name:
            where.append("t.name = ?")
            args.append(name)
        if not include_deprecated:
            where.append("t.deprecated = 0")
        for key, value in labels:
            where.append(
                "EXISTS (SELECT 1 FROM labels l WHERE l.name = t.name AND l.version = t.version "
                "AND l.key = ? AND l.value = ?)"
            )
            args += [key, value]
        if after is not None:
            where.append("(t.name > ? OR (t.name = ? AND (t.sort_key < ? OR (t.sort_key = ? AND t.version < ?))))")
            args += [after.name, after.name, after.sort_key, after.sort_key, after.version]
        sql = "SELECT t.name, t.sort_key, t.version FROM templates t"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY t.name ASC, t.sort_key DESC, t.version DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, [*args, limit]).fetchall()
        return [ListCursor(*row) for row in rows]

    def insert(self, template: PublishedTemplate) -> PublishedTemplate:
        """Store a new template: manifest file first, then one transaction for row, labels and event.
        Returns it with its revision and publish time. The caller has checked that it is absent and
        that its module blob is committed; the primary key still refuses a duplicate."""
        manifest = template.manifest
        canonical = template.canonical_manifest
        compressed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(canonical)
        write_atomic(self.manifest_path(manifest.name, manifest.version), compressed, self.tmp_dir)
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT INTO events (kind, name, version, event_time) VALUES (?, ?, ?, ?)",
                    (KIND_PUBLISHED, manifest.name, manifest.version, now),
                )
                revision = _inserted_rowid(cursor)
                self._db.execute(INSERT_TEMPLATE, (*template_columns(template), revision, now, now))
                self._db.executemany(
                    "INSERT INTO labels (name, version, key, value) VALUES (?, ?, ?, ?)",
                    [(manifest.name, manifest.version, k, v) for k, v in manifest.labels.items()],
                )
                self._db.executemany(
                    "INSERT INTO template_files (name, version, path, sha256) VALUES (?, ?, ?, ?)",
                    [(manifest.name, manifest.version, path, f.sha256) for path, f in manifest.files.items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return replace(template, revision=revision, publish_time=now)

    def deprecate(self, name: str, version: str, reason: str) -> int | None:
        """Mark deprecated and record the event in one transaction. Returns the event's revision, or
        None when the version was already deprecated (nothing changes, no event)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT deprecated FROM templates WHERE name = ? AND version = ?", (name, version)
                ).fetchone()
                if row is None:
                    raise NotFound(f"template {name}@{version} is not published")
                if row[0]:
                    self._db.execute("ROLLBACK")
                    return None
                now = time.time()
                revision = _inserted_rowid(
                    self._db.execute(
                        "INSERT INTO events (kind, name, version, event_time) VALUES (?, ?, ?, ?)",
                        (KIND_DEPRECATED, name, version, now),
                    )
                )
                self._db.execute(
                    "UPDATE templates SET deprecated = 1, deprecation_reason = ?, update_time = ? "
                    "WHERE name = ? AND version = ?",
                    (reason, now, name, version),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return revision

    def update_signature(self, name: str, version: str, signature: SignatureRecord) -> int:
        """Replace a stored template's signature (a re-sign: same canonical bytes, a live key) and record a
        'published' event in one transaction, so watchers pick the new signature up. Returns the event's
        revision. The template's own revision (when it was first published) does not change."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                now = time.time()
                updated = self._db.execute(
                    "UPDATE templates SET key_id = ?, key_version = ?, signature = ?, key_fingerprint = ?, "
                    "update_time = ? WHERE name = ? AND version = ?",
                    (
                        signature.key_id,
                        signature.key_version,
                        signature.signature,
                        signature.key_fingerprint,
                        now,
                        name,
                        version,
                    ),
                ).rowcount
                if updated != 1:
                    raise NotFound(f"template {name}@{version} is not published")
                revision = _inserted_rowid(
                    self._db.execute(
                        "INSERT INTO events (kind, name, version, event_time) VALUES (?, ?, ?, ?)",
                        (KIND_PUBLISHED, name, version, now),
                    )
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return revision

    def all_refs(self, after: tuple[str, str] | None, limit: int) -> list[tuple[str, str]]:
        """Every stored (name, version), deprecated ones too, in primary-key order, one page at a time."""
        name, version = after or ("", "")
        with self._lock:
            rows = self._db.execute(
                "SELECT name, version FROM templates WHERE name > ? OR (name = ? AND version > ?) "
                "ORDER BY name, version LIMIT ?",
                (name, name, version, limit),
            ).fetchall()
        return [(row[0], row[1]) for row in rows]

    # --- signing keys -------------------------------------------------------------------------------

    def record_keys(self, keys: Sequence[PublicKeyVersion], min_versions: dict[str, int]) -> None:
        """Remember every public key version the signer has served (a revoked version stops being served, so
        this is the only place its public key survives) and mark versions below each minimum revoked. Backups
        carry this table, so an archive verifies on its own. A version already recorded keeps its first key."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO signing_keys (key_id, key_version, public_key_pem, fingerprint, first_seen) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(k.key_id, k.key_version, k.public_key_pem, fingerprint(k.public_key_pem), now) for k in keys],
                )
                self._db.executemany(
                    "UPDATE signing_keys SET revoked = 1 WHERE key_id = ? AND key_version < ?",
                    list(min_versions.items()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def signing_keys(self) -> list[tuple[PublicKeyVersion, bool]]:
        """Every recorded key version with whether it is revoked, by key id and version."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key_id, key_version, public_key_pem, first_seen, revoked FROM signing_keys "
                "ORDER BY key_id, key_version"
            ).fetchall()
        return [(PublicKeyVersion(r[0], r[1], r[2], r[3]), bool(r[4])) for r in rows]

    # --- events -----------------------------------------------------------------------------------

    def events_after(self, revision: int, limit: int) -> list[EventRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT revision, kind, name, version FROM events WHERE revision > ? ORDER BY revision LIMIT ?",
                (revision, limit),
            ).fetchall()
        return [EventRow(*row) for row in rows]

    def current_revision(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(revision), 0) FROM events").fetchone()
        return int(row[0])
