"""Re-signing (issue 10 item 9): templates whose key version was revoked get a live signature again, on
demand (one or all) or on an identical re-publish; content never changes; watchers and the audit log hear."""

from __future__ import annotations

import asyncio

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.registry.service import Registry
from services.registry.storage import KIND_PUBLISHED, RegistryStore
from tests.unit.registry.conftest import KeySigner, manifest, publish


async def test_resign_one_revoked_template(registry: Registry, signer: KeySigner, store: RegistryStore) -> None:
    old = (await publish(registry, manifest("a"))).template
    signer.rotate_and_revoke()
    with pytest.raises(FailedPrecondition, match="v1 is revoked"):
        old.verify(signer.keyring())
    result = await registry.resign("a", "1.0.0", all_revoked=False)
    (new,) = result.templates
    assert result.unchanged == 0 and new.signature.key_version == 2
    assert new.canonical_manifest == old.canonical_manifest and new.revision == old.revision
    new.verify(signer.keyring())
    # Stored (not only cached), and a second call has nothing left to do.
    assert store.get("a", "1.0.0").signature == new.signature  # type: ignore[union-attr]
    again = await registry.resign("a", "1.0.0", all_revoked=False)
    assert (again.templates, again.unchanged) == ([], 1)


async def test_resign_all_revoked_leaves_live_ones_and_covers_deprecated(registry: Registry, signer: KeySigner) -> None:
    for name in ("a", "b", "c"):
        await publish(registry, manifest(name))
    await registry.deprecate("c", "1.0.0", "old")
    signer.rotate_and_revoke()
    await publish(registry, manifest("d"))  # signed by v2: live
    result = await registry.resign("", "", all_revoked=True)
    assert sorted(t.manifest.name for t in result.templates) == ["a", "b", "c"]
    assert result.unchanged == 1
    assert all(t.signature.key_version == 2 for t in result.templates)
    assert next(t for t in result.templates if t.manifest.name == "c").deprecated  # still deprecated


async def test_identical_republish_resigns_in_place(registry: Registry, signer: KeySigner) -> None:
    await publish(registry, manifest("a"))
    calls = signer.calls
    same = await publish(registry, manifest("a"))
    assert not same.created and signer.calls == calls  # live key: nothing re-signed
    signer.rotate_and_revoke()
    again = await publish(registry, manifest("a"))
    assert not again.created and again.template.signature.key_version == 2
    again.template.verify(signer.keyring())


async def test_watchers_hear_a_resign_as_a_published_event(registry: Registry, signer: KeySigner) -> None:
    await publish(registry, manifest("a"))
    signer.rotate_and_revoke()
    watch = registry.watch(0)
    first = await anext(watch)
    assert first.kind == KIND_PUBLISHED and first.template.signature.key_version == 1
    resign = asyncio.ensure_future(registry.resign("a", "1.0.0", all_revoked=False))
    event = await anext(watch)  # no time bound: pytest's timeout ends a hang
    await resign
    assert event.kind == KIND_PUBLISHED and event.template.signature.key_version == 2
    await watch.aclose()


@pytest.mark.parametrize(
    ("name", "version", "all_revoked", "error", "field"),
    [
        ("", "", False, InvalidArgument, "all_revoked"),
        ("a", "1.0.0", True, InvalidArgument, "all_revoked"),
        ("", "1.0.0", True, InvalidArgument, "all_revoked"),
        ("a", "", False, InvalidArgument, "version"),
        ("a", "x", False, InvalidArgument, None),
        ("missing", "1.0.0", False, NotFound, None),
    ],
)
async def test_resign_refuses_bad_requests(
    registry: Registry, name: str, version: str, all_revoked: bool, error: type[Exception], field: str | None
) -> None:
    with pytest.raises(error) as caught:
        await registry.resign(name, version, all_revoked)
    if field is not None:
        assert caught.value.field == field  # type: ignore[attr-defined]
