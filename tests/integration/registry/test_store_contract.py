"""One contract, two registry stores: every test runs against the embedded store (SQLite + files) and
the PostgreSQL store (a real server, tests/postgres.py), through the TemplateStore port."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.errors import NotFound
from services.registry.ports import TemplateStore
from services.registry.storage import KIND_DEPRECATED, KIND_PUBLISHED, PublishRace, RegistryStore
from services.registry.store_pg import PgRegistryStore
from services.templates.signature import PublicKeyVersion, SignatureRecord
from tests.postgres import pg_dsn, postgres_server  # noqa: F401 — fixtures
from tests.unit.registry.conftest import SIG, WASM, wasm_module
from tests.unit.registry.conftest import stored as template


def put_blob(store: TemplateStore, module: bytes = WASM) -> str:
    writer = store.new_blob()
    for start in range(0, len(module), 300_000):
        writer.write(module[start : start + 300_000])
    assert writer.read_back() == module
    return writer.commit()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TemplateStore]:
    if request.param == "sqlite":
        opened: TemplateStore = RegistryStore(tmp_path / "data")
    else:
        opened = PgRegistryStore(request.getfixturevalue("pg_dsn"))
    yield opened
    opened.close()


def test_publish_get_and_events(store: TemplateStore) -> None:
    put_blob(store)
    first = store.insert(template("agent", "1.0.0", labels={"team": "a"}))
    second = store.insert(template("agent", "1.1.0"))
    assert (first.revision, second.revision) == (1, 2) and store.current_revision() == 2
    got = store.get("agent", "1.0.0")
    assert got is not None and got.canonical_manifest == first.canonical_manifest
    assert got.manifest.labels == {"team": "a"} and got.signature == SIG and got.module_size == len(WASM)
    assert store.get("agent", "9.9.9") is None and store.has_name("agent") and not store.has_name("other")
    assert [(e.revision, e.kind, e.version) for e in store.events_after(0, 10)] == [
        (1, KIND_PUBLISHED, "1.0.0"),
        (2, KIND_PUBLISHED, "1.1.0"),
    ]
    assert [e.revision for e in store.events_after(1, 10)] == [2]


def test_latest_deprecate_and_resign(store: TemplateStore) -> None:
    put_blob(store)
    for version in ("1.2.0", "1.10.0", "2.0.0-rc.1", "1.9.0"):
        store.insert(template("agent", version))
    assert store.latest_version("agent") == "2.0.0-rc.1"
    assert store.deprecate("agent", "2.0.0-rc.1", "broken") == 5
    assert store.deprecate("agent", "2.0.0-rc.1", "again") is None  # no second event
    assert store.latest_version("agent") == "1.10.0" and store.latest_version("other") is None
    gone = store.get("agent", "2.0.0-rc.1")
    assert gone is not None and gone.deprecated and gone.deprecation_reason == "broken"
    with pytest.raises(NotFound):
        store.deprecate("agent", "3.0.0", "")
    new_sig = SignatureRecord("templates", 2, b"\x02" * 256, key_fingerprint="ab" * 32)
    assert store.update_signature("agent", "1.2.0", new_sig) == 6
    resigned = store.get("agent", "1.2.0")
    assert resigned is not None and resigned.signature == new_sig and resigned.revision == 1  # first publish's
    assert [(e.kind, e.version) for e in store.events_after(4, 10)] == [
        (KIND_DEPRECATED, "2.0.0-rc.1"),
        (KIND_PUBLISHED, "1.2.0"),
    ]
    with pytest.raises(NotFound):
        store.update_signature("agent", "7.0.0", new_sig)
    assert store.all_refs(None, 2) == [("agent", "1.10.0"), ("agent", "1.2.0")]
    assert store.all_refs(("agent", "1.2.0"), 10) == [("agent", "1.9.0"), ("agent", "2.0.0-rc.1")]


def test_list_pages_by_name_then_newest_version(store: TemplateStore) -> None:
    put_blob(store)
    for name, version in [("b", "1.0.0"), ("a", "1.0.0"), ("a", "2.0.0"), ("c", "0.1.0"), ("a", "1.5.0")]:
        store.insert(template(name, version, labels={"tier": "gold" if name != "c" else "silver"}))
    seen: list[tuple[str, str]] = []
    after = None
    while page := store.list_refs("", [], True, after, 2):
        seen += [(r.name, r.version) for r in page]
        after = page[-1]
    assert seen == [("a", "2.0.0"), ("a", "1.5.0"), ("a", "1.0.0"), ("b", "1.0.0"), ("c", "0.1.0")]
    assert [r.name for r in store.list_refs("", [("tier", "silver")], True, None, 10)] == ["c"]
    assert [r.version for r in store.list_refs("a", [("tier", "gold")], True, None, 10)] == ["2.0.0", "1.5.0", "1.0.0"]
    assert store.list_refs("", [("it's", "x')--")], True, None, 10) == []  # quoted, not SQL
    store.deprecate("a", "2.0.0", "")
    assert [r.version for r in store.list_refs("a", [], False, None, 10)] == ["1.5.0", "1.0.0"]


def test_module_blobs_round_trip_by_digest(store: TemplateStore) -> None:
    module = wasm_module(2_500_000)  # several chunks in the PostgreSQL store
    digest = put_blob(store, module)
    assert digest == hashlib.sha256(module).hexdigest() and store.blob_size(digest) == len(module)
    assert not store.blob_referenced(digest)
    with pytest.raises(NotFound):
        store.open_blob(digest)  # only modules a published template references are served
    store.insert(template("big", "1.0.0", module=module))
    assert store.blob_referenced(digest)
    with store.open_blob(digest) as handle:
        assert handle.read() == module
    assert put_blob(store, module) == digest  # uploading it again is harmless


def test_signing_keys_are_remembered_and_revoked(store: TemplateStore) -> None:
    pems = [
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
        for _ in range(2)
    ]
    pem = pems[0]
    keys = [PublicKeyVersion("templates", 1, pems[0], 1.0), PublicKeyVersion("templates", 2, pems[1], 2.0)]
    store.record_keys(keys, {"templates": 1})
    store.record_keys(keys[1:], {"templates": 2})  # v1 is no longer served: kept, and marked revoked
    recorded = store.signing_keys()
    assert [(k.key_version, revoked) for k, revoked in recorded] == [(1, True), (2, False)]
    assert recorded[0][0].public_key_pem == pem


def test_the_store_is_writable_and_sweeps(store: TemplateStore) -> None:
    store.check_writable()
    assert isinstance(store.sweep(), dict)


def test_two_postgres_stores_inserting_one_version_have_one_winner(pg_dsn: str) -> None:  # noqa: F811
    first, second = PgRegistryStore(pg_dsn), PgRegistryStore(pg_dsn)
    try:
        put_blob(first)
        won = first.insert(template("race", "1.0.0", description="first"))
        with pytest.raises(PublishRace):
            second.insert(template("race", "1.0.0", description="second"))
        stored = second.get("race", "1.0.0")
        assert stored is not None and stored.canonical_manifest == won.canonical_manifest
        assert second.current_revision() == 1 and [e.revision for e in second.events_after(0, 10)] == [1]
    finally:
        first.close()
        second.close()
