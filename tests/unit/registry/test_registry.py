"""The registry's domain service with a real store and real RSA signatures (no processes)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from services.common.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from services.registry.service import Registry, describe_difference
from services.templates.manifest import MAX_INHERITANCE_DEPTH
from services.templates.policy import Policy
from tests.unit.registry.conftest import WASM, KeySigner, chunks, manifest, publish, wasm_module

DIGEST = hashlib.sha256(WASM).hexdigest()


async def test_publish_signs_stores_and_reads_back_verifiably(registry: Registry, signer: KeySigner) -> None:
    result = await publish(registry, manifest(tools=["kv", "log"], labels={"team": "core"}))
    assert result.created
    stored = result.template
    assert stored.revision == 1
    assert stored.manifest.module_sha256 == DIGEST
    assert stored.manifest.limits.fuel == Policy.load().default_limits["fuel"]  # defaults are applied and signed
    got = await registry.get("agent", "1.0.0")
    assert got.canonical_manifest == stored.canonical_manifest
    got.verify(signer.keyring())  # real RSA verification over the canonical bytes


async def test_identical_republish_is_idempotent_and_not_resigned(registry: Registry, signer: KeySigner) -> None:
    first = await publish(registry, manifest(role="a"))
    # Same content, different JSON formatting and key order.
    raw = json.dumps({"role": "a", "version": "1.0.0", "name": "agent"}, indent=4).encode()
    again = await publish(registry, raw)
    assert not again.created
    assert again.template.revision == first.template.revision
    assert signer.calls == 1


async def test_changed_republish_is_already_exists_naming_the_field(registry: Registry) -> None:
    await publish(registry, manifest(limits={"fuel": 5000}, env={"A": "1"}))
    with pytest.raises(AlreadyExists, match=r"limits\.fuel \(published 5000, this one 6000\)"):
        await publish(registry, manifest(limits={"fuel": 6000}, env={"A": "1"}))
    with pytest.raises(AlreadyExists, match=r"module_sha256"):
        await publish(registry, manifest(limits={"fuel": 5000}, env={"A": "1"}), wasm_module(64))


async def test_latest_is_highest_non_deprecated_version(registry: Registry) -> None:
    for version in ("1.0.0", "1.10.0", "1.9.0", "2.0.0-beta.1"):
        await publish(registry, manifest(version=version))
    assert (await registry.get("agent", "")).manifest.version == "2.0.0-beta.1"
    await registry.deprecate("agent", "2.0.0-beta.1", "unstable")
    assert (await registry.get("agent", "")).manifest.version == "1.10.0"
    for version in ("1.0.0", "1.10.0", "1.9.0"):
        await registry.deprecate("agent", version, "")
    with pytest.raises(NotFound, match="every version of template agent is deprecated"):
        await registry.get("agent", "")
    with pytest.raises(NotFound, match="template nobody is not published"):
        await registry.get("nobody", "")
    with pytest.raises(InvalidArgument, match="not a semantic version"):
        await registry.get("agent", "1.0")
    with pytest.raises(InvalidArgument, match="name"):
        await registry.get("", "1.0.0")


async def test_inheritance_child_overrides_parent(registry: Registry) -> None:
    await publish(registry, manifest("base", "1.0.0", role="worker", tools=["kv"], env={"A": "1", "B": "2"},
                                     limits={"fuel": 5000}))  # fmt: skip
    child = await registry.publish(
        manifest("child", "1.0.0", extends="base@1.0.0", env={"B": "3"}, tools=["log"]), 0, chunks(b"")
    )
    m = child.template.manifest
    assert (m.role, m.tools, dict(m.env), m.limits.fuel) == ("worker", ("log",), {"A": "1", "B": "3"}, 5000)
    assert m.module_sha256 == DIGEST and child.template.module_size == len(WASM)
    assert m.extends == "base@1.0.0"


async def test_missing_parent_depth_and_deprecated_parent(registry: Registry) -> None:
    with pytest.raises(FailedPrecondition, match=r"parent template base@1\.0\.0 is not published"):
        await publish(registry, manifest("child", "1.0.0", extends="base@1.0.0"))
    await publish(registry, manifest("level0"))
    for i in range(1, MAX_INHERITANCE_DEPTH + 1):
        await registry.publish(manifest(f"level{i}", extends=f"level{i - 1}@1.0.0"), 0, chunks(b""))
    with pytest.raises(FailedPrecondition, match=f"more than {MAX_INHERITANCE_DEPTH} levels"):
        await registry.publish(manifest("toodeep", extends=f"level{MAX_INHERITANCE_DEPTH}@1.0.0"), 0, chunks(b""))
    with pytest.raises(FailedPrecondition, match="cannot extend itself"):
        await publish(registry, manifest("self", extends="self@1.0.0"))
    await registry.publish(manifest("kid", extends="level0@1.0.0"), 0, chunks(b""))
    await registry.deprecate("level0", "1.0.0", "CVE-1")
    with pytest.raises(FailedPrecondition, match=r"level0@1.0.0 is deprecated \(CVE-1\)"):
        await registry.publish(manifest("kid2", extends="level0@1.0.0"), 0, chunks(b""))
    again = await registry.publish(manifest("kid", extends="level0@1.0.0"), 0, chunks(b""))
    assert not again.created  # an existing child stays idempotent


async def test_policy_denial_names_the_rule(registry: Registry, signer: KeySigner) -> None:
    with pytest.raises(PermissionDenied) as err:
        await publish(registry, manifest(tools=["shell"]))
    assert err.value.rule == "denied_tools.shell"
    with pytest.raises(PermissionDenied) as err:
        await publish(registry, manifest(limits={"memory_bytes": 1 << 40}))
    assert err.value.rule == "limits.memory_bytes.max"
    assert signer.calls == 0
    assert not list((registry.store.root / "blobs").rglob("*/*"))  # nothing stored for a denied publish


@pytest.mark.parametrize(
    ("module_size", "data", "error", "message"),
    [
        (8, b"", InvalidArgument, "module_size is 8 but no module bytes arrived"),
        (0, WASM, InvalidArgument, "module_size is 0"),
        (16, WASM, InvalidArgument, "ended after 8 of module_size 16 bytes"),
        (4, WASM, InvalidArgument, "more module bytes arrived than the header's module_size 4"),
        (8, b"\x7fELF\x02\x01\x01\x00", InvalidArgument, "not WebAssembly"),
        (4, b"\0asm", InvalidArgument, "at least an 8-byte header"),
        (9 * 1024 * 1024, b"", ResourceExhausted, "module.max_bytes"),
    ],
)
async def test_bad_modules_are_refused_precisely(
    registry: Registry, module_size: int, data: bytes, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        await registry.publish(manifest(), module_size, chunks(data))
    assert not list(registry.store.tmp_dir.iterdir())  # the temp upload is gone


async def test_chunk_over_one_mib_is_refused(registry: Registry) -> None:
    module = wasm_module(2 * 1024 * 1024)
    with pytest.raises(InvalidArgument, match="chunk limit"):
        await registry.publish(manifest(), len(module), chunks(module, 2 * 1024 * 1024))


async def test_declared_digest_must_match_the_upload(registry: Registry) -> None:
    with pytest.raises(InvalidArgument, match="does not match the uploaded module"):
        await publish(registry, manifest(module_sha256="ab" * 32))
    with pytest.raises(FailedPrecondition, match="is not stored; upload it"):
        await registry.publish(manifest(module_sha256="ab" * 32), 0, chunks(b""))
    await publish(registry, manifest("first"))
    reused = await registry.publish(manifest("second", module_sha256=DIGEST), 0, chunks(b""))
    assert reused.template.module_size == len(WASM)


async def test_signer_unavailable_stores_nothing(registry: Registry, signer: KeySigner) -> None:
    signer.down = True
    with pytest.raises(Unavailable):
        await publish(registry, manifest())
    signer.down = False
    with pytest.raises(NotFound):
        await registry.get("agent", "1.0.0")
    assert (await publish(registry, manifest())).created


async def test_fetch_module_streams_and_detects_tampering(registry: Registry) -> None:
    module = wasm_module(2 * 1024 * 1024 + 17)
    result = await publish(registry, manifest(), module)
    digest = result.template.manifest.module_sha256
    pieces = [piece async for piece in registry.fetch_module(digest)]
    assert b"".join(c for c, _ in pieces) == module
    assert [len(c) for c, _ in pieces] == [1024 * 1024, 1024 * 1024, 17]
    assert {total for _, total in pieces} == {len(module)}
    path = registry.store.blob_path(digest)
    damaged = bytearray(path.read_bytes())
    damaged[100] ^= 1
    path.write_bytes(bytes(damaged))
    received = []
    with pytest.raises(DataLoss, match="no longer matches its digest"):
        async for chunk, _ in registry.fetch_module(digest):
            received.append(chunk)
    assert sum(map(len, received)) < len(module)  # the last chunk is held back
    with pytest.raises(NotFound):
        [p async for p in registry.fetch_module("cd" * 32)]
    with pytest.raises(InvalidArgument):
        [p async for p in registry.fetch_module("XYZ")]


async def test_list_filters_and_paginates(registry: Registry) -> None:
    for name, version, tier in [("a", "1.0.0", "gold"), ("a", "2.0.0", "gold"), ("b", "1.0.0", "silver")]:
        await publish(registry, manifest(name, version, labels={"tier": tier, "env": "prod"}))
    await registry.deprecate("a", "1.0.0", "")
    page = await registry.list("", "", 1, "", True)
    refs = [page.templates[0].ref]
    while page.next_page_token:
        page = await registry.list("", "", 1, page.next_page_token, True)
        refs += [t.ref for t in page.templates]
    assert refs == ["a@2.0.0", "a@1.0.0", "b@1.0.0"]
    live = await registry.list("", "tier=gold, env=prod", 0, "", False)
    assert [t.ref for t in live.templates] == ["a@2.0.0"] and live.next_page_token == ""
    with pytest.raises(InvalidArgument, match="key=value"):
        await registry.list("", "tier", 0, "", False)
    first = await registry.list("", "", 1, "", True)
    with pytest.raises(InvalidArgument, match="different filters"):
        await registry.list("a", "", 1, first.next_page_token, True)


async def test_watch_replays_then_follows_live_events(registry: Registry) -> None:
    await publish(registry, manifest(version="1.0.0"))
    await registry.deprecate("agent", "1.0.0", "old")
    stream = registry.watch(0)
    first = await anext(stream)
    second = await anext(stream)
    assert (first.revision, first.kind, first.template.deprecated) == (1, "published", False)
    assert (second.revision, second.kind, second.template.deprecation_reason) == (2, "deprecated", "old")
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    assert not pending.done()
    await publish(registry, manifest(version="1.1.0"))
    live = await pending  # no time bound: pytest's timeout ends a hang
    assert (live.revision, live.template.ref) == (3, "agent@1.1.0")
    await stream.aclose()
    later = registry.watch(2)
    assert (await anext(later)).revision == 3
    await later.aclose()
    assert len(registry.hub) == 0


async def test_a_watcher_that_falls_behind_is_dropped_without_blocking_publishers(registry: Registry) -> None:
    stream = registry.watch(0)
    await publish(registry, manifest(version="0.0.1"))
    assert (await anext(stream)).revision == 1  # replayed from the store
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)  # now following live events
    await publish(registry, manifest(version="0.0.2"))
    assert (await pending).revision == 2
    # The watcher stops reading; publishers keep going past its queue capacity (8) without waiting (a
    # publish that waited for the watcher would wait forever: pytest's timeout, not a clock, would say so).
    for i in range(3, 13):
        await publish(registry, manifest(version=f"0.0.{i}"))
    with pytest.raises(ResourceExhausted, match="resubscribe with after_revision=2"):
        await anext(stream)
    assert len(registry.hub) == 0
    resumed = registry.watch(2)
    assert [(await anext(resumed)).revision for _ in range(10)] == list(range(3, 13))
    await resumed.aclose()


async def test_events_that_outrun_the_replay_are_read_from_the_store(registry: Registry) -> None:
    await publish(registry, manifest(version="0.0.1"))
    stream = registry.watch(0)
    assert (await anext(stream)).revision == 1  # subscribed, still replaying
    for i in range(2, 14):  # more than the queue holds, while the watcher is in its replay
        await publish(registry, manifest(version=f"0.0.{i}"))
    assert [(await anext(stream)).revision for _ in range(12)] == list(range(2, 14))
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    await publish(registry, manifest(version="0.0.14"))
    assert (await pending).revision == 14
    await stream.aclose()


async def test_deprecate_is_idempotent_and_validated(registry: Registry) -> None:
    await publish(registry, manifest())
    first = await registry.deprecate("agent", "1.0.0", "first reason")
    second = await registry.deprecate("agent", "1.0.0", "second reason")
    assert second.deprecation_reason == "first reason" and first.deprecated
    assert registry.store.current_revision() == 2
    with pytest.raises(NotFound):
        await registry.deprecate("agent", "2.0.0", "")
    with pytest.raises(InvalidArgument, match="version is required"):
        await registry.deprecate("agent", "", "")
    with pytest.raises(InvalidArgument, match="reason"):
        await registry.deprecate("agent", "1.0.0", "x" * 2000)


async def test_reads_come_from_cache_then_disk(registry: Registry, tmp_path: Path) -> None:
    await publish(registry, manifest())
    registry.cache.clear()
    await registry.get("agent", "1.0.0")  # miss: disk
    registry.store.manifest_path("agent", "1.0.0").write_bytes(b"garbage")
    assert (await registry.get("agent", "1.0.0")).ref == "agent@1.0.0"  # hit: served from memory
    registry.cache.clear()
    with pytest.raises(DataLoss):
        await registry.get("agent", "1.0.0")


def test_describe_difference_names_map_keys() -> None:
    from services.templates.manifest import parse_draft, resolve

    limits = Policy.load().default_limits

    def m(**f: object):
        return resolve(parse_draft(manifest(**f)), limits, lambda n, v: None, DIGEST)

    assert describe_difference(m(env={"A": "1"}), m(env={"A": "2"})).startswith("env.A")
    assert describe_difference(m(tools=["kv"]), m(tools=["log"])).startswith("tools")
