"""Backup and restore of the embedded registry store.

    python -m services.registry.backup create <dir> [--data-dir DIR]
    python -m services.registry.backup restore <dir> [--data-dir DIR] [--force]

`create` may run while the registry serves: it snapshots the database with SQLite's online backup
API, then copies the files the *snapshot* references. Manifest and blob files never change once
committed (versions are immutable, blobs are content-addressed), so the copy is consistent. Every
file is checked on the way (blob name = its sha256, manifest = its recorded sha256) and listed with
its sha256 in CHECKSUMS.json. Blobs are modules and template files alike (manifest `files`); `verify` and
`restore` also check that every blob the archived database references is in the archive under its digest.

The archive carries the signer's public key set (KEYS.json: every version the registry has seen, the
revoked ones marked; the registry records them from the signer's key push), so it verifies on its own:
`create` checks every template's signature against it before writing anything, and `verify` and
`restore` check every checksum and every signature again. A signature that does not match its key, or
names a key the archive lacks, fails them (`--allow-unverified` restores anyway, naming each); templates
signed by a revoked version verify and are listed, to be re-signed (`afctl templates resign --all-revoked`).

`restore` verifies before touching the target, assembles the copy next to it and renames it into place.
Stop the registry first. It refuses a data directory that already holds a registry unless --force, which
moves the old one aside (never deletes it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from services.common import dir_claim
from services.common.config import Env
from services.common.errors import DataLoss, FailedPrecondition
from services.registry.storage import DB_NAME, MAX_CANONICAL_BYTES, bounded_decompress
from services.templates.signature import Keyring, PublicKeyVersion, SignatureRecord, UnknownKeyVersion, fingerprint

CHECKSUMS = "CHECKSUMS.json"
KEYS = "KEYS.json"
FORMAT = 1


class BackupError(Exception):
    """The backup cannot be made or restored; the message says what to do."""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_keys(db: sqlite3.Connection) -> list[dict[str, Any]]:
    try:
        rows = db.execute(
            "SELECT key_id, key_version, public_key_pem, revoked FROM signing_keys ORDER BY key_id, key_version"
        ).fetchall()
    except sqlite3.OperationalError:  # a store from before the registry recorded keys
        return []
    return [
        {
            "key_id": key_id,
            "key_version": version,
            "public_key_pem": pem,
            "fingerprint_sha256": fingerprint(pem),
            "revoked": bool(revoked),
        }
        for key_id, version, pem, revoked in rows
    ]


def _keyring(keys: list[dict[str, Any]]) -> tuple[Keyring, set[tuple[str, int]]]:
    """Every archived version verifies (revoked ones too: the question is whether the bytes are intact)."""
    ring = Keyring(PublicKeyVersion(k["key_id"], int(k["key_version"]), k["public_key_pem"]) for k in keys)
    return ring, {(k["key_id"], int(k["key_version"])) for k in keys if k["revoked"]}


def check_signatures(root: Path, db: sqlite3.Connection, keys: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(problems, revoked): every template's signature over its manifest file under `root` against `keys`."""
    ring, revoked_versions = _keyring(keys)
    try:
        rows = db.execute("SELECT name, version, key_id, key_version, signature, key_fingerprint FROM templates")
    except sqlite3.OperationalError:
        rows = db.execute("SELECT name, version, key_id, key_version, signature, '' FROM templates")
    problems, revoked = [], []
    for name, version, key_id, key_version, signature, key_fp in rows.fetchall():
        rel = _manifest_rel(name, version)
        try:
            canonical = bounded_decompress((root / rel).read_bytes(), MAX_CANONICAL_BYTES, rel)
            ring.verify(canonical, SignatureRecord(key_id, key_version, bytes(signature), key_fp))
        except UnknownKeyVersion:
            problems.append(f"{name}@{version}: signed by {key_id} v{key_version}, whose public key is not archived")
        except (FailedPrecondition, DataLoss, OSError) as exc:
            problems.append(f"{name}@{version}: {getattr(exc, 'message', exc)}")
        else:
            if (key_id, key_version) in revoked_versions:
                revoked.append(f"{name}@{version} ({key_id} v{key_version})")
    return problems, revoked


def _manifest_rel(name: str, version: str) -> str:
    return f"manifests/{name}/{version}.json.zst"


def _blob_rel(digest: str) -> str:
    return f"blobs/sha256/{digest[:2]}/{digest}"


def create_backup(data_dir: Path, dest: Path, allow_unverified: bool = False) -> dict[str, Any]:
    db_path = data_dir / DB_NAME
    if not db_path.is_file():
        raise BackupError(f"{data_dir} holds no registry ({DB_NAME} is missing)")
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty; choose a new directory for the backup")
    staging = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        source = sqlite3.connect(db_path, timeout=10)
        target = sqlite3.connect(staging / DB_NAME)
        try:
            source.backup(target)
        finally:
            source.close()
        try:
            rows = target.execute("SELECT name, version, manifest_sha256, module_sha256 FROM templates").fetchall()
            file_blobs = _file_blobs(target)
            revision = target.execute("SELECT COALESCE(MAX(revision), 0) FROM events").fetchone()[0]
            keys = _read_keys(target)
        finally:
            target.close()
        problems: list[str] = []
        blobs: set[str] = set(file_blobs)  # template files' blobs, then each module
        for name, version, manifest_sha256, module_sha256 in rows:
            rel = _manifest_rel(name, version)
            copy = _copy(data_dir, staging, rel, problems)
            if copy is not None:
                try:
                    canonical = bounded_decompress(copy.read_bytes(), MAX_CANONICAL_BYTES, rel)
                    if hashlib.sha256(canonical).hexdigest() != manifest_sha256:
                        problems.append(f"{rel} does not match its recorded sha256")
                except DataLoss as exc:
                    problems.append(exc.message)
            blobs.add(module_sha256)
        for digest in sorted(blobs):
            rel = _blob_rel(digest)
            copy = _copy(data_dir, staging, rel, problems)
            if copy is not None and _sha256_file(copy) != digest:
                problems.append(f"{rel} does not match its digest")
        if problems:
            raise BackupError("the store is damaged; nothing was backed up:\n  " + "\n  ".join(problems))
        snapshot = sqlite3.connect(staging / DB_NAME)
        try:
            unverified, revoked = check_signatures(staging, snapshot, keys)
        finally:
            snapshot.close()
        if unverified and not allow_unverified:
            raise BackupError(
                "signatures do not verify against the signer's recorded keys; nothing was backed up (pass "
                "--allow-unverified to back up anyway):\n  " + "\n  ".join(unverified)
            )
        (staging / KEYS).write_text(json.dumps({"keys": keys}, indent=2, sort_keys=True))
        files = {
            str(path.relative_to(staging)): {"sha256": _sha256_file(path), "size": path.stat().st_size}
            for path in sorted(staging.rglob("*"))
            if path.is_file()
        }
        summary = {
            "format": FORMAT,
            "created_unix": time.time(),
            "templates": len(rows),
            "blobs": len(blobs),
            "revision": revision,
            "files": files,
            "keys": len(keys),
            "signed_by_revoked_keys": revoked,
            "unverified": unverified,
        }
        (staging / CHECKSUMS).write_text(json.dumps(summary, indent=2, sort_keys=True))
        _fsync_tree(staging)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _file_blobs(db: sqlite3.Connection) -> set[str]:
    """The digests of every template file (none in a store made before template files existed)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'template_files'").fetchone() is None:
        return set()
    return {row[0] for row in db.execute("SELECT DISTINCT sha256 FROM template_files")}


def _referenced_blob_problems(db: sqlite3.Connection, files: dict[str, Any]) -> list[str]:
    """Every blob the archived database references (modules and template files) must be in the archive
    under its digest, and its checksum must be that digest: a blob changed together with CHECKSUMS.json
    is still caught."""
    digests = {row[0] for row in db.execute("SELECT module_sha256 FROM templates")} | _file_blobs(db)
    problems = []
    for digest in sorted(digests):
        rel = _blob_rel(digest)
        if rel not in files:
            problems.append(f"{rel} is referenced but not in the backup")
        elif files[rel]["sha256"] != digest:
            problems.append(f"{rel} does not match its digest")
    return problems


def _copy(src_root: Path, dst_root: Path, rel: str, problems: list[str]) -> Path | None:
    source, target = src_root / rel, dst_root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(source, target)
    except FileNotFoundError:
        problems.append(f"{rel} is referenced but missing")
        return None
    return target


def verify_backup(src: Path, allow_unverified: bool = False) -> dict[str, Any]:
    """Check every file against CHECKSUMS.json and every signature against KEYS.json; raise BackupError
    listing every problem. The summary names the templates signed by revoked versions."""
    try:
        summary = json.loads((src / CHECKSUMS).read_text())
        files = summary["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{src} is not a registry backup ({CHECKSUMS} unreadable: {exc})") from exc
    if summary.get("format") != FORMAT:
        raise BackupError(f"{src} has backup format {summary.get('format')!r}; this tool reads format {FORMAT}")
    problems = []
    for rel, expected in sorted(files.items()):
        path = src / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif _sha256_file(path) != expected["sha256"]:
            problems.append(f"{rel} does not match its checksum")
    if DB_NAME not in files:
        problems.append(f"{DB_NAME} is not listed")
    if KEYS not in files:
        problems.append(f"{KEYS} is not listed: this archive cannot be verified on its own")
    if problems:
        raise BackupError(f"backup {src} failed verification; nothing was restored:\n  " + "\n  ".join(problems))
    try:
        keys = json.loads((src / KEYS).read_text())["keys"]
        db = sqlite3.connect(f"file:{src / DB_NAME}?immutable=1", uri=True)
    except (OSError, ValueError, KeyError, TypeError, sqlite3.Error) as exc:
        raise BackupError(f"backup {src}: {KEYS} or {DB_NAME} is unreadable ({exc})") from exc
    try:
        problems = _referenced_blob_problems(db, files)
        unverified, revoked = check_signatures(src, db, keys)
    except sqlite3.Error as exc:
        raise BackupError(f"backup {src}: {DB_NAME} is unreadable ({exc})") from exc
    finally:
        db.close()
    if problems:
        raise BackupError(f"backup {src} failed verification; nothing was restored:\n  " + "\n  ".join(problems))
    if unverified and not allow_unverified:
        raise BackupError(
            f"backup {src}: signatures do not verify against its {KEYS}; nothing was restored (pass "
            "--allow-unverified to restore anyway):\n  " + "\n  ".join(unverified)
        )
    return {**summary, "signed_by_revoked_keys": revoked, "unverified": unverified}


def restore_backup(src: Path, data_dir: Path, force: bool = False, allow_unverified: bool = False) -> dict[str, Any]:
    summary = verify_backup(src, allow_unverified)
    # A registry running on data_dir would go on writing into the directory moved aside (--force), or
    # over what was restored: refused while a live process holds it (services/common/dir_claim.py).
    claimed = None
    if data_dir.exists():
        try:
            claimed = dir_claim.claim(data_dir)
        except dir_claim.DirInUse as exc:
            raise BackupError(f"{exc} (a running registry); stop it before restoring into it") from None
    try:
        return _restore_verified(src, data_dir, summary, force)
    finally:
        if claimed is not None:
            claimed.release()


def _restore_verified(src: Path, data_dir: Path, summary: dict[str, Any], force: bool) -> dict[str, Any]:
    moved_aside = None
    if data_dir.exists() and any(p.name != dir_claim.LOCK_NAME for p in data_dir.iterdir()):
        if not force:
            raise BackupError(f"{data_dir} is not empty; stop the registry and pass --force to move it aside")
        moved_aside = data_dir.with_name(f"{data_dir.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
    staging = data_dir.parent / f".{data_dir.name}.restoring-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        for rel in summary["files"]:
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, target)
        # Check the copies too: a restore must never install bytes other than those verified.
        for rel, expected in summary["files"].items():
            if _sha256_file(staging / rel) != expected["sha256"]:
                raise BackupError(f"{rel} changed while being copied; nothing was restored")
        _fsync_tree(staging)
        if moved_aside is not None:
            os.replace(data_dir, moved_aside)
        elif data_dir.exists():
            (data_dir / dir_claim.LOCK_NAME).unlink(missing_ok=True)  # ours: the claim holds it open
            data_dir.rmdir()
        os.replace(staging, data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**summary, "moved_aside": str(moved_aside) if moved_aside else ""}


def main(argv: list[str] | None = None, env: Env | None = None) -> int:
    env = env or Env()
    parser = argparse.ArgumentParser(prog="python -m services.registry.backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["create", "restore", "verify"])
    parser.add_argument("dir", type=Path, help="the backup directory")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=env.path("AF_DATA_DIR", "var/registry"),
        help="the registry data directory (default: $AF_DATA_DIR or var/registry)",
    )
    parser.add_argument("--force", action="store_true", help="restore over an existing registry (moved aside)")
    parser.add_argument(
        "--allow-unverified",
        action="store_true",
        help="go on when signatures do not verify against the archived keys (each is named)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "create":
            summary = create_backup(args.data_dir, args.dir, args.allow_unverified)
            print(
                f"backed up {summary['templates']} templates, {summary['blobs']} modules, revision "
                f"{summary['revision']} to {args.dir}"
            )
        elif args.command == "verify":
            summary = verify_backup(args.dir, args.allow_unverified)
            print(f"{args.dir}: {len(summary['files'])} files and their signatures verified")
        else:
            summary = restore_backup(args.dir, args.data_dir, args.force, args.allow_unverified)
            print(f"restored {summary['templates']} templates, revision {summary['revision']}, into {args.data_dir}")
            if summary["moved_aside"]:
                print(f"the previous data directory was moved to {summary['moved_aside']}")
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for ref in summary.get("unverified", []):
        print(f"warning: not verified: {ref}", file=sys.stderr)
    if summary.get("signed_by_revoked_keys"):
        print(
            f"{len(summary['signed_by_revoked_keys'])} templates are signed by revoked key versions; re-sign them "
            "(afctl templates resign --all-revoked): " + ", ".join(summary["signed_by_revoked_keys"])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
