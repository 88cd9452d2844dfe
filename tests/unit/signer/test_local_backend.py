"""Local key store: file modes, versions, rotation, revocation, atomic metadata, crash leftovers."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.signer import local_backend
from services.signer.local_backend import LocalKeyBackend
from services.templates.signature import Keyring


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_v1_with_private_modes(backend: LocalKeyBackend) -> None:
    keys = backend.key_set()
    assert (keys.min_version, keys.latest_version) == (1, 1)
    assert [k.key_version for k in keys.keys] == [1]
    assert mode(backend.dir) == 0o700
    assert mode(backend.dir.parent) == 0o700
    assert mode(backend.dir / "v1.pem") == 0o600
    assert mode(backend.dir / "metadata.json") == 0o600
    assert (backend.dir / "v1.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    meta = json.loads((backend.dir / "metadata.json").read_text())
    assert meta["min_version"] == 1 and meta["latest_version"] == 1 and "1" in meta["versions"]


def test_restart_keeps_the_same_keys(tmp_path: Path, backend: LocalKeyBackend) -> None:
    record = backend.sign(b"payload")
    before = backend.key_set()
    backend.close()
    reopened = LocalKeyBackend(tmp_path, "templates")
    reopened.open()
    try:
        assert reopened.key_set() == before
        Keyring(reopened.key_set().keys).verify(b"payload", record)
    finally:
        reopened.close()


def test_rotation_adds_a_version_and_old_signatures_still_verify(backend: LocalKeyBackend) -> None:
    old = backend.sign(b"payload")
    backend.rotate()
    new = backend.sign(b"payload")
    keys = backend.key_set()
    assert (old.key_version, new.key_version) == (1, 2)
    assert [k.key_version for k in keys.keys] == [1, 2]
    assert mode(backend.dir / "v2.pem") == 0o600
    ring = keys.keyring()
    ring.verify(b"payload", old)
    ring.verify(b"payload", new)
    assert old.signature != new.signature


def test_min_version_revokes_older_versions_and_survives_restart(tmp_path: Path, backend: LocalKeyBackend) -> None:
    old = backend.sign(b"payload")
    backend.rotate()
    backend.rotate()
    backend.set_min_version(3)
    keys = backend.key_set()
    assert (keys.min_version, keys.latest_version) == (3, 3)
    assert [k.key_version for k in keys.keys] == [3]
    with pytest.raises(FailedPrecondition, match="revoked"):
        keys.keyring().verify(b"payload", old)
    backend.close()
    reopened = LocalKeyBackend(tmp_path, "templates")
    reopened.open()
    try:
        assert reopened.key_set() == keys
    finally:
        reopened.close()


def test_revoked_key_files_may_be_deleted(tmp_path: Path, backend: LocalKeyBackend) -> None:
    backend.rotate()
    backend.set_min_version(2)
    backend.close()
    (tmp_path / "keys" / "templates" / "v1.pem").unlink()  # destroying a revoked private key is allowed
    reopened = LocalKeyBackend(tmp_path, "templates")
    reopened.open()
    assert reopened.key_set().latest_version == 2
    reopened.close()


@pytest.mark.parametrize("name", ["v1.pem", "metadata.json"])
@pytest.mark.parametrize("bits", [0o640, 0o604])
def test_refuses_group_or_world_readable_files(tmp_path: Path, backend: LocalKeyBackend, name: str, bits: int) -> None:
    backend.close()
    os.chmod(backend.dir / name, bits)
    with pytest.raises(FailedPrecondition, match=rf"{name} has mode 0{bits:o}.*chmod 600"):
        LocalKeyBackend(tmp_path, "templates").open()


def test_refuses_open_key_directory(tmp_path: Path, backend: LocalKeyBackend) -> None:
    backend.close()
    os.chmod(backend.dir, 0o755)
    with pytest.raises(FailedPrecondition, match="chmod 700"):
        LocalKeyBackend(tmp_path, "templates").open()


def test_refuses_a_second_process_on_the_same_directory(tmp_path: Path, backend: LocalKeyBackend) -> None:
    with pytest.raises(FailedPrecondition, match="another signer process"):
        LocalKeyBackend(tmp_path, "templates").open()


def test_refuses_keys_without_metadata(tmp_path: Path, backend: LocalKeyBackend) -> None:
    backend.close()
    (backend.dir / "metadata.json").unlink()
    with pytest.raises(FailedPrecondition, match=r"no metadata\.json"):
        LocalKeyBackend(tmp_path, "templates").open()


def test_refuses_corrupt_metadata(tmp_path: Path, backend: LocalKeyBackend) -> None:
    backend.close()
    (backend.dir / "metadata.json").write_text("{not json")
    with pytest.raises(FailedPrecondition, match="unreadable"):
        LocalKeyBackend(tmp_path, "templates").open()


def test_refuses_missing_live_key(tmp_path: Path, backend: LocalKeyBackend) -> None:
    backend.close()
    (backend.dir / "v1.pem").unlink()
    with pytest.raises(FailedPrecondition, match=r"v1\.pem is missing"):
        LocalKeyBackend(tmp_path, "templates").open()


def test_metadata_write_is_atomic(monkeypatch: pytest.MonkeyPatch, backend: LocalKeyBackend) -> None:
    """A crash between writing the new metadata and renaming it leaves the old metadata intact."""
    before = (backend.dir / "metadata.json").read_bytes()
    real_replace = os.replace

    def crash(src: str | Path, dst: str | Path) -> None:
        if str(dst).endswith("metadata.json"):
            raise OSError("simulated crash before rename")
        real_replace(src, dst)

    monkeypatch.setattr(local_backend.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        backend.rotate()
    assert (backend.dir / "metadata.json").read_bytes() == before
    assert backend.key_set().latest_version == 1  # memory did not move ahead of disk
    monkeypatch.undo()
    assert backend.sign(b"x").key_version == 1


def test_crashed_rotation_leftovers_are_harmless(tmp_path: Path, backend: LocalKeyBackend) -> None:
    """A key file and a temporary file from a rotation that never committed: not a version, then replaced."""
    backend.close()
    orphan = backend.dir / "v2.pem"
    orphan.write_bytes(b"half-written")
    os.chmod(orphan, 0o600)
    (backend.dir / ".metadata.json.tmp").write_bytes(b"{")
    reopened = LocalKeyBackend(tmp_path, "templates")
    reopened.open()
    try:
        assert reopened.key_set().latest_version == 1
        assert not (backend.dir / ".metadata.json.tmp").exists()
        reopened.rotate()
        assert reopened.sign(b"x").key_version == 2
        assert orphan.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert mode(orphan) == 0o600
    finally:
        reopened.close()


def test_no_temporary_files_remain_after_operations(backend: LocalKeyBackend) -> None:
    backend.rotate()
    backend.set_min_version(2)
    assert sorted(p.name for p in backend.dir.iterdir()) == [".lock", "metadata.json", "v1.pem", "v2.pem"]


def test_bad_key_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="key name"):
        LocalKeyBackend(tmp_path, "../escape")
