"""Backup and restore of the embedded registry store.

    python -m services.registry.backup create <dir> [--data-dir DIR]
    python -m services.registry.backup restore <dir> [--data-dir DIR] [--force]

`create` may run while the registry serves: it snapshots the database with SQLite's online backup
API, then copies the files the *snapshot* references. Manifest and blob files never change once
committed (versions are immutable, blobs are content-addressed), so the copy is consistent. Every
file is checked on the way (blob name = its sha256, manifest = its recorded sha256) and listed with
its sha256 in CHECKSUMS.json.

`restore` verifies every checksum before touching the target, assembles the copy next to it and
renames it into place. Stop the registry first. It refuses a data directory that already holds a
registry unless --force, which moves the old one aside (never deletes it).
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

from services.common.config import Env
from services.common.errors import DataLoss
from services.registry.storage import DB_NAME, MAX_CANONICAL_BYTES, bounded_decompress

CHECKSUMS = "CHECKSUMS.json"
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


def _manifest_rel(name: str, version: str) -> str:
    return f"manifests/{name}/{version}.json.zst"


def _blob_rel(digest: str) -> str:
    return f"blobs/sha256/{digest[:2]}/{digest}"


def create_backup(data_dir: Path, dest: Path) -> dict[str, Any]:
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
            revision = target.execute("SELECT COALESCE(MAX(revision), 0) FROM events").fetchone()[0]
        finally:
            target.close()
        problems: list[str] = []
        blobs: set[str] = set()
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


def _copy(src_root: Path, dst_root: Path, rel: str, problems: list[str]) -> Path | None:
    source, target = src_root / rel, dst_root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(source, target)
    except FileNotFoundError:
        problems.append(f"{rel} is referenced but missing")
        return None
    return target


def verify_backup(src: Path) -> dict[str, Any]:
    """Check every file against CHECKSUMS.json; raise BackupError listing every mismatch."""
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
    if problems:
        raise BackupError(f"backup {src} failed verification; nothing was restored:\n  " + "\n  ".join(problems))
    return summary


def restore_backup(src: Path, data_dir: Path, force: bool = False) -> dict[str, Any]:
    summary = verify_backup(src)
    moved_aside = None
    if data_dir.exists() and any(data_dir.iterdir()):
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
    args = parser.parse_args(argv)
    try:
        if args.command == "create":
            summary = create_backup(args.data_dir, args.dir)
            print(
                f"backed up {summary['templates']} templates, {summary['blobs']} modules, revision "
                f"{summary['revision']} to {args.dir}"
            )
        elif args.command == "verify":
            summary = verify_backup(args.dir)
            print(f"{args.dir}: {len(summary['files'])} files verified")
        else:
            summary = restore_backup(args.dir, args.data_dir, args.force)
            print(f"restored {summary['templates']} templates, revision {summary['revision']}, into {args.data_dir}")
            if summary["moved_aside"]:
                print(f"the previous data directory was moved to {summary['moved_aside']}")
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
