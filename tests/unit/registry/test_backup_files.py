"""Template files in registry backups: copied with the modules, checked on verify and restore."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from services.registry import backup
from services.registry.service import Registry
from services.registry.storage import RegistryStore
from tests.unit.registry.conftest import manifest
from tests.unit.registry.test_publish_files import WORDS, publish_files

DIGEST = hashlib.sha256(WORDS).hexdigest()
REL = f"blobs/sha256/{DIGEST[:2]}/{DIGEST}"


async def test_files_are_backed_up_and_restored(registry: Registry, tmp_path: Path) -> None:
    await publish_files(registry, manifest("a"), {"/data/words.txt": WORDS})
    summary = backup.create_backup(registry.store.root, tmp_path / "bk")
    assert summary["blobs"] == 2 and REL in summary["files"]
    backup.restore_backup(tmp_path / "bk", tmp_path / "restored")
    restored = RegistryStore(tmp_path / "restored")
    try:
        with restored.open_blob(DIGEST) as handle:
            assert handle.read() == WORDS
    finally:
        restored.close()


async def test_a_changed_file_blob_fails_verification(registry: Registry, tmp_path: Path) -> None:
    await publish_files(registry, manifest("a"), {"/data/words.txt": WORDS})
    backup.create_backup(registry.store.root, tmp_path / "bk")
    (tmp_path / "bk" / REL).write_bytes(WORDS.upper())
    with pytest.raises(backup.BackupError, match="does not match its checksum"):
        backup.restore_backup(tmp_path / "bk", tmp_path / "restored")
    # Changed together with CHECKSUMS.json, the blob no longer matches its own name.
    checksums = tmp_path / "bk" / backup.CHECKSUMS
    summary = json.loads(checksums.read_text())
    summary["files"][REL]["sha256"] = hashlib.sha256(WORDS.upper()).hexdigest()
    checksums.write_text(json.dumps(summary))
    with pytest.raises(backup.BackupError, match="does not match its digest"):
        backup.verify_backup(tmp_path / "bk")
    assert not (tmp_path / "restored").exists()


async def test_a_missing_file_blob_fails_verification(registry: Registry, tmp_path: Path) -> None:
    await publish_files(registry, manifest("a"), {"/data/words.txt": WORDS})
    backup.create_backup(registry.store.root, tmp_path / "bk")
    (tmp_path / "bk" / REL).unlink()
    checksums = tmp_path / "bk" / backup.CHECKSUMS
    summary = json.loads(checksums.read_text())
    del summary["files"][REL]
    checksums.write_text(json.dumps(summary))
    with pytest.raises(backup.BackupError, match="referenced but not in the backup"):
        backup.verify_backup(tmp_path / "bk")
