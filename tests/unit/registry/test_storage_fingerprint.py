"""The store keeps each signature's key fingerprint, and opens a store made before the column existed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from services.registry.service import Registry
from services.registry.storage import DB_NAME, RegistryStore
from tests.unit.registry.conftest import manifest, publish


async def test_the_fingerprint_the_signer_sent_is_stored_and_served(registry: Registry, store: RegistryStore) -> None:
    published = (await publish(registry, manifest("a"))).template
    assert published.signature.key_fingerprint  # KeySigner records it, as the signer does
    assert store.get("a", "1.0.0").signature.key_fingerprint == published.signature.key_fingerprint  # type: ignore[union-attr]


def test_a_store_from_before_the_column_opens_and_reads_empty_fingerprints(tmp_path: Path) -> None:
    RegistryStore(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("ALTER TABLE templates DROP COLUMN key_fingerprint")
    db.close()
    store = RegistryStore(tmp_path)
    try:
        columns = {row[1] for row in store._db.execute("PRAGMA table_info(templates)")}
        assert "key_fingerprint" in columns
    finally:
        store.close()
