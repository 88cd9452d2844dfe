from __future__ import annotations

import json

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.templates.manifest import (
    MAX_INHERITANCE_DEPTH,
    MAX_MANIFEST_BYTES,
    Manifest,
    manifest_from_canonical,
    parse_draft,
    resolve,
)
from services.templates.policy import Policy

DIGEST = "ab" * 32
POLICY = Policy.load()


def draft(**fields: object) -> bytes:
    return json.dumps({"name": "agent", "version": "1.0.0", **fields}).encode()


def published(*manifests: Manifest):
    by_ref = {m.ref: m for m in manifests}

    def load(name: str, version: str) -> Manifest:
        try:
            return by_ref[f"{name}@{version}"]
        except KeyError:
            raise NotFound(f"{name}@{version}") from None

    return load


def resolved(raw: bytes, *parents: Manifest, digest: str | None = DIGEST) -> Manifest:
    return resolve(parse_draft(raw), POLICY.default_limits, published(*parents), digest)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "manifest_json"),
        (b"\xff\xfe", "manifest_json"),
        (b"{not json", "manifest_json"),
        (b"[1,2]", "manifest_json"),
        (b'{"name":"a","version":"1.0.0","version":"2.0.0"}', "version"),
        (b'{"name":"a","version":"1.0.0","limits":{"fuel":NaN}}', "manifest_json"),
        (draft(colour="blue"), "colour"),
        (json.dumps({"version": "1.0.0"}).encode(), "name"),
        (draft(name="Bad_Name"), "name"),
        (draft(version="1.0"), "version"),
        (draft(version="01.0.0"), "version"),
        (draft(extends="parent"), "extends"),
        (draft(tools="log"), "tools"),
        (draft(tools=["log", "log"]), "tools"),
        (draft(limits={"fuel": -1}), "limits.fuel"),
        (draft(limits={"fuel": True}), "limits.fuel"),
        (draft(limits={"cpu": 1}), "limits.cpu"),
        (draft(env={"A": 1}), "env.A"),
        (draft(env={"": "x"}), "env"),
        (draft(env={"A=B": "x"}), "env"),
        (draft(env={"A\0": "x"}), "env"),
        (draft(env={"A": "x\0y"}), "env"),
        (draft(env={f"K{i}": "v" for i in range(65)}), "env"),
        (draft(env={"K" * 257: "v"}), "env key"),
        (draft(env={"K": "v" * 4097}), "env.K"),
        (draft(args=["a\0b"]), "args"),
        (draft(args=["a"] * 65), "args"),
        (draft(args=["a" * 4097]), "args[0]"),
        (draft(module_sha256="XYZ"), "module_sha256"),
        (draft(http_hosts=["no-port"]), "http_hosts[0]"),
        (draft(retryable="yes"), "retryable"),
    ],
)
def test_bad_drafts_name_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_draft(raw)
    assert err.value.field == field
    assert err.value.message


def test_env_errors_do_not_repeat_a_long_key() -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_draft(draft(env={"=" * 250: "v"}))
    assert len(err.value.message) < 120


def test_oversize_manifest_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="limit"):
        parse_draft(draft(description="x" * MAX_MANIFEST_BYTES))


def test_defaults_are_applied_and_signed_content_is_canonical() -> None:
    manifest = resolved(draft(tools=["log"]))
    assert manifest.limits.fuel == POLICY.default_limits["fuel"]
    # Re-formatting the publisher's JSON cannot change the signed bytes.
    pretty = json.dumps({"tools": ["log"], "version": "1.0.0", "name": "agent"}, indent=4).encode()
    assert resolved(pretty).canonical_bytes() == manifest.canonical_bytes()
    assert manifest_from_canonical(manifest.canonical_bytes()) == manifest


def test_child_overrides_parent_and_merges_maps() -> None:
    parent = resolved(
        json.dumps(
            {
                "name": "base",
                "version": "1.0.0",
                "tools": ["log", "kv"],
                "limits": {"fuel": 5000, "timeout_ms": 1000},
                "env": {"A": "1", "B": "2"},
                "description": "parent",
            }
        ).encode()
    )
    child = resolved(
        draft(extends="base@1.0.0", limits={"fuel": 2000}, env={"B": "3"}, tools=["log"]), parent, digest=None
    )
    assert child.extends == "base@1.0.0"
    assert child.limits.fuel == 2000 and child.limits.timeout_ms == 1000
    assert dict(child.env) == {"A": "1", "B": "3"}
    assert child.tools == ("log",)
    assert child.description == "parent"
    assert child.module_sha256 == parent.module_sha256


def test_missing_parent_is_a_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition, match="not published"):
        resolved(draft(extends="ghost@1.0.0"))


def test_self_extension_is_rejected() -> None:
    with pytest.raises(FailedPrecondition, match="itself"):
        resolved(draft(extends="agent@1.0.0"))


def test_cycle_in_stored_lineage_is_rejected() -> None:
    # A corrupted store where a -> b -> a must not loop forever.
    a = resolved(json.dumps({"name": "a", "version": "1.0.0"}).encode())
    b = resolved(json.dumps({"name": "b", "version": "1.0.0", "extends": "a@1.0.0"}).encode(), a, digest=None)
    a_cyclic = Manifest(**{**a.__dict__, "extends": "b@1.0.0"})
    with pytest.raises(FailedPrecondition, match="inherit from itself"):
        resolved(draft(extends="a@1.0.0"), a_cyclic, b, digest=None)


def test_inheritance_depth_is_bounded() -> None:
    chain = [resolved(json.dumps({"name": "t0", "version": "1.0.0"}).encode())]
    for i in range(1, MAX_INHERITANCE_DEPTH + 2):
        raw = json.dumps({"name": f"t{i}", "version": "1.0.0", "extends": f"t{i - 1}@1.0.0"}).encode()
        try:
            chain.append(resolved(raw, *chain, digest=None))
        except FailedPrecondition as exc:
            assert "levels" in exc.message
            assert i > MAX_INHERITANCE_DEPTH
            return
    pytest.fail("depth bound never tripped")


def test_declared_digest_must_match_upload() -> None:
    with pytest.raises(InvalidArgument) as err:
        resolved(draft(module_sha256="cd" * 32))
    assert err.value.field == "module_sha256"


def test_a_module_is_required() -> None:
    with pytest.raises(InvalidArgument, match="no module"):
        resolved(draft(), digest=None)
