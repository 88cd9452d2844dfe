from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from services.common import dir_claim
from services.registry import backup
from services.registry.service import Registry
from services.registry.storage import RegistryStore
from tests.unit.registry.conftest import manifest, publish, wasm_module


async def test_backup_and_restore_round_trip(registry: Registry, tmp_path: Path) -> None:
    await publish(registry, manifest("a", labels={"k": "v"}))
    await publish(registry, manifest("b"), wasm_module(4096))
    await registry.deprecate("a", "1.0.0", "old")
    (registry.store.tmp_dir / "junk.upload").write_bytes(b"in flight")  # not part of a backup
    summary = backup.create_backup(registry.store.root, tmp_path / "bk")
    assert (summary["templates"], summary["blobs"], summary["revision"]) == (2, 2, 3)
    listed = json.loads((tmp_path / "bk" / backup.CHECKSUMS).read_text())["files"]
    assert "registry.db" in listed and "manifests/a/1.0.0.json.zst" in listed and backup.KEYS in listed
    assert len(listed) == 6

    target = tmp_path / "restored"
    backup.restore_backup(tmp_path / "bk", target)
    restored = RegistryStore(target)
    try:
        a = restored.get("a", "1.0.0")
        assert a is not None and a.deprecated and a.deprecation_reason == "old"
        assert a.canonical_manifest == (await registry.get("a", "1.0.0")).canonical_manifest
        assert restored.current_revision() == 3
        b = restored.get("b", "1.0.0")
        assert b is not None and restored.has_blob(b.manifest.module_sha256)
        # Revisions continue after a restore.
        assert restored.deprecate("b", "1.0.0", "") == 4
    finally:
        restored.close()


async def test_a_tampered_backup_is_refused(registry: Registry, tmp_path: Path) -> None:
    await publish(registry, manifest("a"))
    backup.create_backup(registry.store.root, tmp_path / "bk")
    blob = next(p for p in (tmp_path / "bk" / "blobs").rglob("*") if p.is_file())
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(backup.BackupError, match="does not match its checksum"):
        backup.restore_backup(tmp_path / "bk", tmp_path / "restored")
    assert not (tmp_path / "restored").exists()


async def test_restore_refuses_a_live_registry_unless_forced(registry: Registry, tmp_path: Path) -> None:
    await publish(registry, manifest("a"))
    backup.create_backup(registry.store.root, tmp_path / "bk")
    target = tmp_path / "live"
    target.mkdir()
    (target / "registry.db").write_bytes(b"something")
    with pytest.raises(backup.BackupError, match="--force"):
        backup.restore_backup(tmp_path / "bk", target)
    result = backup.restore_backup(tmp_path / "bk", target, force=True)
    assert Path(result["moved_aside"], "registry.db").read_bytes() == b"something"
    assert (target / "manifests" / "a" / "1.0.0.json.zst").is_file()


async def test_restore_refuses_a_directory_a_running_registry_holds_even_forced(
    registry: Registry, tmp_path: Path
) -> None:
    await publish(registry, manifest("a"))
    backup.create_backup(registry.store.root, tmp_path / "bk")
    target = tmp_path / "running"
    held = dir_claim.claim(target)  # as the service kit claims AF_DATA_DIR for a running registry
    try:
        with pytest.raises(backup.BackupError, match=f"process {os.getpid()} is using .*stop it"):
            backup.restore_backup(tmp_path / "bk", target, force=True)
        assert [p.name for p in target.iterdir()] == [".lock"]  # nothing moved, nothing written
    finally:
        held.release()
    backup.restore_backup(tmp_path / "bk", target)  # stopped: an empty directory is restored into
    assert (target / "manifests" / "a" / "1.0.0.json.zst").is_file()


async def test_backup_refuses_a_damaged_store(registry: Registry, tmp_path: Path) -> None:
    await publish(registry, manifest("a"))
    registry.store.manifest_path("a", "1.0.0").write_bytes(b"garbage")
    with pytest.raises(backup.BackupError, match="damaged"):
        backup.create_backup(registry.store.root, tmp_path / "bk")
    assert not (tmp_path / "bk").exists()


def test_cli_reports_errors_with_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert backup.main(["create", str(tmp_path / "bk"), "--data-dir", str(tmp_path / "none")]) == 1
    assert "holds no registry" in capsys.readouterr().err
