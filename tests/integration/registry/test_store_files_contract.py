"""Template files in both registry stores (SQLite + files, PostgreSQL): their blobs are stored once by
digest, referenced by the template that ships them, served by digest and kept by the sweep."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.common.errors import NotFound
from services.registry.ports import TemplateStore
from services.registry.storage import RegistryStore
from services.templates.policy import Policy
from tests.integration.registry.test_store_contract import put_blob, store, template  # noqa: F401 — fixture
from tests.postgres import pg_dsn, postgres_server  # noqa: F401 — fixtures

POLICY = Policy.load()
WORDS = b"apple\nbanana\ncherry\n"


def test_a_file_blob_is_served_once_a_template_references_it(store: TemplateStore) -> None:  # noqa: F811
    put_blob(store)
    digest = put_blob(store, WORDS)
    assert digest == hashlib.sha256(WORDS).hexdigest()
    assert put_blob(store, WORDS) == digest  # the same bytes again: one blob (content-addressed)
    assert store.has_blob(digest) and store.blob_size(digest) == len(WORDS)
    with pytest.raises(NotFound):
        store.open_blob(digest)  # nothing references it yet
    files = {"/data/words.txt": {"sha256": digest, "size": len(WORDS)}}
    stored = store.insert(template("agent", "1.0.0", files=files))
    assert store.blob_referenced(digest)
    with store.open_blob(digest) as handle:
        assert handle.read() == WORDS
    got = store.get("agent", "1.0.0")
    assert got is not None and got.canonical_manifest == stored.canonical_manifest
    assert got.manifest.files["/data/words.txt"].sha256 == digest


def test_the_sweep_keeps_file_blobs(tmp_path: Path) -> None:
    embedded = RegistryStore(tmp_path / "data")
    try:
        put_blob(embedded)
        kept = put_blob(embedded, WORDS)
        dropped = put_blob(embedded, b"nobody ships this")
        embedded.insert(template("agent", "1.0.0", files={"/data/w": {"sha256": kept, "size": len(WORDS)}}))
        assert embedded.sweep()["blobs"] == 1
        assert embedded.has_blob(kept) and not embedded.has_blob(dropped)
    finally:
        embedded.close()


async def test_publish_with_files_through_the_registry_on_each_store(store: TemplateStore) -> None:  # noqa: F811
    """The registry's publish path (upload, hash, check stored, commit, insert) on both adapters."""
    from services.common.cache import LruTtlCache
    from services.registry.service import Registry
    from services.registry.watch import WatchHub
    from tests.unit.registry.conftest import KeySigner, manifest
    from tests.unit.registry.test_publish_files import publish_files

    signer = KeySigner()
    registry = Registry(store, POLICY, signer, LruTtlCache("files_contract", 8, 60.0), WatchHub(queue_capacity=8))
    first = await publish_files(registry, manifest("agent"), {"/data/words.txt": WORDS})
    digest = first.template.manifest.files["/data/words.txt"].sha256
    with store.open_blob(digest) as handle:
        assert handle.read() == WORDS
    # A second template naming the stored file by digest, without uploading it again.
    files = {"/data/w.txt": {"sha256": digest, "size": len(WORDS)}}
    second = await publish_files(registry, manifest("other", files=files), {})
    assert second.template.manifest.files["/data/w.txt"].sha256 == digest
