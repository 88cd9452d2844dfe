"""The signer's key ledger (issue 10 item 12): a known version with another public key, versions gone
missing, or a lost key store are refused; a key is created only when the ledger has never seen it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.common.errors import FailedPrecondition
from services.signer.ledger import KeyLedger
from services.signer.local_backend import LocalKeyBackend
from services.signer.service import SignerService


def ledger(tmp_path: Path) -> KeyLedger:
    return KeyLedger(tmp_path / "ledger" / "templates.json", "templates")


async def started(tmp_path: Path, keys_dir: Path) -> SignerService:
    service = SignerService(LocalKeyBackend(keys_dir, "templates"), ledger=ledger(tmp_path))
    await service.start()
    return service


async def test_records_versions_and_accepts_the_same_keys_again(tmp_path: Path) -> None:
    service = await started(tmp_path, tmp_path / "store")
    await service.rotate()
    service.close()
    assert ledger(tmp_path).describe_known() == "v1..v2"
    again = await started(tmp_path, tmp_path / "store")  # same key store: fine
    assert (await again.public_keys()).latest_version == 2
    again.close()


async def test_a_lost_key_store_is_not_recreated(tmp_path: Path) -> None:
    (await started(tmp_path, tmp_path / "store")).close()
    shutil.rmtree(tmp_path / "store")
    with pytest.raises(FailedPrecondition, match="the key store was lost"):
        await started(tmp_path, tmp_path / "store")
    assert not list((tmp_path / "store").rglob("*.pem"))


async def test_another_key_under_a_known_version_is_refused(tmp_path: Path) -> None:
    (await started(tmp_path, tmp_path / "store")).close()
    # Another key store whose v1 is a different key, under the same ledger.
    other = SignerService(LocalKeyBackend(tmp_path / "other", "templates"))
    await other.start()
    other.close()
    with pytest.raises(FailedPrecondition, match=r"key templates v1 now has public key sha256 .* recorded"):
        await started(tmp_path, tmp_path / "other")


async def test_a_key_store_that_went_back_in_versions_is_refused(tmp_path: Path) -> None:
    service = await started(tmp_path, tmp_path / "store")
    shutil.copytree(tmp_path / "store", tmp_path / "backup", ignore=shutil.ignore_patterns(".lock"))
    await service.rotate()
    service.close()
    with pytest.raises(
        FailedPrecondition, match="latest version of templates is v1, but this signer has served up to v2"
    ):
        await started(tmp_path, tmp_path / "backup")
