from __future__ import annotations

import random
from pathlib import Path

import pytest
import zstandard

from services.common.errors import DataLoss, InvalidArgument, NotFound
from services.registry.storage import ListCursor, RegistryStore, sortable_version_key
from services.templates.semver import Version
from tests.unit.registry.conftest import SIG, WASM
from tests.unit.registry.conftest import stored as template


def put_blob(store: RegistryStore) -> str:
    writer = store.new_blob()
    writer.write(WASM)
    return writer.commit()


def test_sortable_key_orders_like_semver_precedence() -> None:
    # The example chain from SemVer 2.0.0 section 11, plus multi-digit numbers.
    ordered = [
        "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
        "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.2.0", "1.10.0", "2.0.0-0", "2.0.0-1",
        "2.0.0-1.a", "2.0.0-a", "2.0.0-a-b", "2.0.0-ab", "2.0.0", "10.0.0", "123456789012.0.0",
    ]  # fmt: skip
    shuffled = ordered[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled, key=sortable_version_key) == ordered
    assert sorted(shuffled, key=Version) == ordered
    assert sortable_version_key("1.0.0+build.1") == sortable_version_key("1.0.0")


def test_insert_then_get_round_trips_and_assigns_revisions(store: RegistryStore) -> None:
    put_blob(store)
    first = store.insert(template("agent", "1.0.0", labels={"team": "a"}))
    second = store.insert(template("agent", "1.1.0"))
    assert (first.revision, second.revision) == (1, 2)
    got = store.get("agent", "1.0.0")
    assert got is not None
    assert got.canonical_manifest == first.canonical_manifest
    assert got.manifest.labels == {"team": "a"}
    assert got.signature == SIG
    assert store.get("agent", "9.9.9") is None
    path = store.manifest_path("agent", "1.0.0")
    assert zstandard.ZstdDecompressor().decompress(path.read_bytes()) == first.canonical_manifest


def test_latest_skips_deprecated_and_uses_precedence(store: RegistryStore) -> None:
    put_blob(store)
    for version in ("1.2.0", "1.10.0", "2.0.0-rc.1", "1.9.0"):
        store.insert(template("agent", version))
    assert store.latest_version("agent") == "2.0.0-rc.1"
    assert store.deprecate("agent", "2.0.0-rc.1", "broken") == 5
    assert store.deprecate("agent", "2.0.0-rc.1", "again") is None  # no second event
    assert store.latest_version("agent") == "1.10.0"
    assert store.latest_version("other") is None
    with pytest.raises(NotFound):
        store.deprecate("agent", "3.0.0", "")


def test_list_pages_by_name_then_newest_version(store: RegistryStore) -> None:
    put_blob(store)
    for name, version in [("b", "1.0.0"), ("a", "1.0.0"), ("a", "2.0.0"), ("c", "0.1.0"), ("a", "1.5.0")]:
        store.insert(template(name, version, labels={"tier": "gold" if name != "c" else "silver"}))
    seen: list[tuple[str, str]] = []
    after = None
    while True:
        page = store.list_refs("", [], True, after, 2)
        if not page:
            break
        seen += [(r.name, r.version) for r in page]
        after = page[-1]
    assert seen == [("a", "2.0.0"), ("a", "1.5.0"), ("a", "1.0.0"), ("b", "1.0.0"), ("c", "0.1.0")]
    assert [r.name for r in store.list_refs("", [("tier", "silver")], True, None, 10)] == ["c"]
    assert [r.version for r in store.list_refs("a", [("tier", "gold")], True, None, 10)] == ["2.0.0", "1.5.0", "1.0.0"]
    store.deprecate("a", "2.0.0", "")
    assert [r.version for r in store.list_refs("a", [], False, None, 10)] == ["1.5.0", "1.0.0"]


def test_page_token_is_opaque_and_bound_to_filters() -> None:
    cursor = ListCursor("a", "key", "1.0.0")
    token = cursor.encode("f1")
    assert ListCursor.decode(token, "f1") == cursor
    with pytest.raises(InvalidArgument, match="different filters"):
        ListCursor.decode(token, "f2")
    with pytest.raises(InvalidArgument, match="not one this server issued"):
        ListCursor.decode("not-a-token!!", "f1")


def test_events_and_revisions_survive_reopening(tmp_path: Path) -> None:
    store = RegistryStore(tmp_path / "data")
    put_blob(store)
    store.insert(template("agent", "1.0.0"))
    store.deprecate("agent", "1.0.0", "old")
    store.close()
    reopened = RegistryStore(tmp_path / "data")
    assert reopened.current_revision() == 2
    assert [(e.revision, e.kind) for e in reopened.events_after(0, 10)] == [(1, "published"), (2, "deprecated")]
    assert reopened.insert(template("agent", "1.1.0")).revision == 3
    assert [e.revision for e in reopened.events_after(2, 10)] == [3]
    reopened.close()


def test_flipped_byte_in_a_stored_manifest_is_data_loss(store: RegistryStore) -> None:
    put_blob(store)
    store.insert(template())
    path = store.manifest_path("agent", "1.0.0")
    # Rewrite a valid zstd frame of slightly different content: decompression succeeds, the digest does not.
    canonical = zstandard.ZstdDecompressor().decompress(path.read_bytes())
    altered = canonical.replace(b'"role":""', b'"role":"x"')
    path.write_bytes(zstandard.ZstdCompressor().compress(altered))
    with pytest.raises(DataLoss, match="does not match its recorded sha256"):
        store.get("agent", "1.0.0")
    raw = bytearray(zstandard.ZstdCompressor().compress(canonical))
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataLoss):
        store.get("agent", "1.0.0")


def test_decompression_bomb_is_refused(store: RegistryStore) -> None:
    put_blob(store)
    store.insert(template())
    path = store.manifest_path("agent", "1.0.0")
    # Small window, so only the output bound stops it.
    params = zstandard.ZstdCompressionParameters.from_level(19, window_log=10)
    path.write_bytes(zstandard.ZstdCompressor(compression_params=params).compress(b" " * (64 * 1024 * 1024)))
    with pytest.raises(DataLoss, match="decompresses past"):
        store.get("agent", "1.0.0")
    # Large window: refused before any output (the frame asks for more memory than allowed).
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(b"\0" * (64 * 1024 * 1024)))
    with pytest.raises(DataLoss, match="corrupt"):
        store.get("agent", "1.0.0")
    path.unlink()
    with pytest.raises(DataLoss, match="missing"):
        store.get("agent", "1.0.0")


def test_sweep_removes_only_unreferenced_files(store: RegistryStore) -> None:
    digest = put_blob(store)
    store.insert(template())
    orphan = store.new_blob()
    orphan.write(WASM + b"\x00")
    orphan_digest = orphan.commit()
    (store.tmp_dir / "dead.upload").write_bytes(b"partial")
    stray = store.manifest_path("agent", "9.0.0")
    stray.write_bytes(b"x")
    assert store.sweep() == {"tmp": 1, "blobs": 1, "manifests": 1}
    assert store.has_blob(digest) and not store.has_blob(orphan_digest)
    assert not stray.exists()
    assert store.get("agent", "1.0.0") is not None


def test_blob_paths_reject_non_digests(store: RegistryStore) -> None:
    with pytest.raises(InvalidArgument):
        store.blob_path("../../etc/passwd")
    with pytest.raises(NotFound):
        store.open_blob("ab" * 32)


def test_store_is_writable(store: RegistryStore) -> None:
    store.check_writable()
