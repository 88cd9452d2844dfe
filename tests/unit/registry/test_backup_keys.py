"""Backups carry the public key set and verify on their own (issue 10 item 13)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from services.registry import backup
from services.registry.service import Registry
from services.registry.storage import DB_NAME, RegistryStore
from tests.unit.registry.conftest import KeySigner, manifest, publish


def rewrite_checksums(archive: Path) -> None:
    """What a careful forger (or a tool that 'repairs' archives) does: make the checksums agree again."""
    summary = json.loads((archive / backup.CHECKSUMS).read_text())
    for rel, entry in summary["files"].items():
        data = (archive / rel).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    (archive / backup.CHECKSUMS).write_text(json.dumps(summary))


async def test_the_archive_holds_every_key_version_revoked_ones_marked(
    registry: Registry, signer: KeySigner, store: RegistryStore, tmp_path: Path
) -> None:
    await publish(registry, manifest("old"))
    signer.rotate_and_revoke()
    store.record_keys(signer.public_keys(), {signer.key_id: signer.min_version})  # the push after revocation
    await publish(registry, manifest("new"))
    summary = backup.create_backup(store.root, tmp_path / "bk")
    keys = json.loads((tmp_path / "bk" / backup.KEYS).read_text())["keys"]
    assert [(k["key_version"], k["revoked"]) for k in keys] == [(1, True), (2, False)]
    assert all(len(k["fingerprint_sha256"]) == 64 and "BEGIN PUBLIC KEY" in k["public_key_pem"] for k in keys)
    assert summary["signed_by_revoked_keys"] == ["old@1.0.0 (templates v1)"]
    verified = backup.verify_backup(tmp_path / "bk")  # on its own: no signer, no registry
    assert verified["signed_by_revoked_keys"] == ["old@1.0.0 (templates v1)"] and verified["unverified"] == []


async def test_restore_refuses_an_archive_whose_signature_was_altered(registry: Registry, tmp_path: Path) -> None:
    await publish(registry, manifest("a"))
    await publish(registry, manifest("b"))
    backup.create_backup(registry.store.root, tmp_path / "bk")
    with sqlite3.connect(tmp_path / "bk" / DB_NAME) as db:
        rows = dict(db.execute("SELECT name, signature FROM templates"))
        db.execute("UPDATE templates SET signature = ? WHERE name = 'a'", (rows["b"],))
    db.close()
    rewrite_checksums(tmp_path / "bk")
    with pytest.raises(backup.BackupError, match=r"a@1.0.0: signature does not match the manifest"):
        backup.restore_backup(tmp_path / "bk", tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
    summary = backup.restore_backup(tmp_path / "bk", tmp_path / "restored", allow_unverified=True)
    assert len(summary["unverified"]) == 1


async def test_an_archive_without_its_keys_does_not_verify(registry: Registry, tmp_path: Path) -> None:
    await publish(registry, manifest("a"))
    backup.create_backup(registry.store.root, tmp_path / "bk")
    (tmp_path / "bk" / backup.KEYS).write_text(json.dumps({"keys": []}))
    rewrite_checksums(tmp_path / "bk")
    with pytest.raises(backup.BackupError, match="whose public key is not archived"):
        backup.verify_backup(tmp_path / "bk")
    summary = json.loads((tmp_path / "bk" / backup.CHECKSUMS).read_text())
    del summary["files"][backup.KEYS]
    (tmp_path / "bk" / backup.CHECKSUMS).write_text(json.dumps(summary))
    with pytest.raises(backup.BackupError, match="cannot be verified on its own"):
        backup.verify_backup(tmp_path / "bk")


async def test_a_store_never_told_the_keys_refuses_to_back_up_unverified(registry: Registry, tmp_path: Path) -> None:
    await publish(registry, manifest("a"))
    with registry.store._lock:
        registry.store._db.execute("DELETE FROM signing_keys")  # as a store from before keys were recorded
    with pytest.raises(backup.BackupError, match="nothing was backed up"):
        backup.create_backup(registry.store.root, tmp_path / "bk")
    assert not (tmp_path / "bk").exists()
    summary = backup.create_backup(registry.store.root, tmp_path / "bk", allow_unverified=True)
    assert summary["unverified"] == ["a@1.0.0: signed by templates v1, whose public key is not archived"]
