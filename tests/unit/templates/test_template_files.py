"""Read-only template files in the trust domain: parsing, inheritance, canonical bytes, policy rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.common.errors import InvalidArgument
from services.templates.manifest import Manifest, TemplateFile, manifest_from_canonical, parse_draft, resolve
from services.templates.messages import manifest_from_proto, manifest_to_proto
from services.templates.policy import Policy, PolicyError

DIGEST = "ab" * 32
OTHER = "cd" * 32
POLICY = Policy.load()


def _draft(**extra: Any) -> bytes:
    return json.dumps({"name": "t", "version": "1.0.0", "module_sha256": "11" * 32, **extra}).encode()


def _resolve(raw: bytes, parent: Manifest | None = None, uploaded: dict[str, TemplateFile] | None = None) -> Manifest:
    def load(name: str, version: str) -> Manifest:
        assert parent is not None
        return parent

    return resolve(parse_draft(raw), POLICY.default_limits, load, None, uploaded)


def test_a_manifest_without_files_keeps_its_canonical_bytes() -> None:
    manifest = _resolve(_draft())
    assert b'"files"' not in manifest.canonical_bytes()
    assert manifest_from_canonical(manifest.canonical_bytes()) == manifest


def test_files_are_signed_content_and_survive_the_round_trips() -> None:
    manifest = _resolve(_draft(files={"/data/words.txt": {"sha256": DIGEST, "size": 5}}))
    canonical = manifest.canonical_bytes()
    assert f'"files":{{"/data/words.txt":{{"sha256":"{DIGEST}","size":5}}}}'.encode() in canonical
    assert manifest_from_canonical(canonical) == manifest
    assert manifest_from_proto(manifest_to_proto(manifest)).files == manifest.files


def test_a_child_merges_files_path_by_path() -> None:
    one = {"sha256": DIGEST, "size": 1}
    parent = _resolve(_draft(files={"/data/a": one, "/data/b": one}))
    child_files = {"/data/b": {"sha256": OTHER, "size": 2}}
    child = _resolve(
        json.dumps({"name": "c", "version": "1.0.0", "extends": "t@1.0.0", "files": child_files}).encode(), parent
    )
    assert child.files == {"/data/a": TemplateFile(DIGEST, 1), "/data/b": TemplateFile(OTHER, 2)}


def test_an_upload_fills_in_and_must_agree_with_the_declared_file() -> None:
    uploaded = {"/data/a": TemplateFile(DIGEST, 3)}
    assert _resolve(_draft(), uploaded=uploaded).files == uploaded
    with pytest.raises(InvalidArgument, match="does not match the uploaded file"):
        _resolve(_draft(files={"/data/a": {"sha256": OTHER, "size": 3}}), uploaded=uploaded)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([], "must be an object"),
        ({"data/a": {"sha256": DIGEST, "size": 1}}, "absolute path"),
        ({"/a": {"sha256": DIGEST, "size": 1}}, "absolute path"),
        ({"/data/../etc/passwd": {"sha256": DIGEST, "size": 1}}, "'..' component"),
        ({"/data/./a": {"sha256": DIGEST, "size": 1}}, "'..' component"),
        ({"/data/a/": {"sha256": DIGEST, "size": 1}}, "absolute path"),
        ({"/data/a b": {"sha256": DIGEST, "size": 1}}, "absolute path"),
        ({"/data/a": {"sha256": "AB" * 32, "size": 1}}, "64 lower-case hex"),
        ({"/data/a": {"sha256": DIGEST, "size": -1}}, "whole number"),
        ({"/data/a": {"sha256": DIGEST, "size": True}}, "whole number"),
        ({"/data/a": {"sha256": DIGEST}}, "exactly sha256 and size"),
        ({"/data/" + "x" * 5000: {"sha256": DIGEST, "size": 1}}, "at most 256 characters"),
    ],
)
def test_bad_file_entries_are_invalid_argument(files: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        parse_draft(_draft(files=files))
    assert len(str(caught.value)) < 400  # never repeats unbounded input


def test_a_path_cannot_be_a_file_and_a_directory() -> None:
    with pytest.raises(InvalidArgument, match="is a file and a directory"):
        _resolve(_draft(files={"/data/a": {"sha256": DIGEST, "size": 1}, "/data/a/b": {"sha256": DIGEST, "size": 1}}))


def _with_files(files: dict[str, TemplateFile]) -> Manifest:
    base = _resolve(_draft())
    return Manifest(**{**base.__dict__, "files": files})


@pytest.mark.parametrize(
    ("files", "rule"),
    [
        ({f"/data/f{i}": TemplateFile(DIGEST, 1) for i in range(65)}, "files.max_count"),
        ({"/data/big": TemplateFile(DIGEST, 16 * 1024 * 1024 + 1)}, "files.max_file_bytes"),
        ({f"/data/f{i}": TemplateFile(DIGEST, 16 * 1024 * 1024) for i in range(5)}, "files.max_total_bytes"),
        ({"/etc/passwd": TemplateFile(DIGEST, 1)}, "files.allowed_dirs"),
        ({"/scratch/x": TemplateFile(DIGEST, 1)}, "files.allowed_dirs"),
        ({"/database/x": TemplateFile(DIGEST, 1)}, "files.allowed_dirs"),
    ],
)
def test_policy_limits_name_their_rule(files: dict[str, TemplateFile], rule: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"\(rule {rule}\)"):
        POLICY.check(_with_files(files))


def test_policy_accepts_files_within_its_bounds() -> None:
    POLICY.check(_with_files({"/data/words.txt": TemplateFile(DIGEST, 1000)}))


@pytest.mark.parametrize("bad", ["/", "/scratch", "data", "/data/", "/a/../b"])
def test_policy_file_refuses_mount_dirs_it_cannot_honour(bad: str) -> None:
    with pytest.raises(PolicyError):
        Policy.from_mapping({**_policy_data(), "files": {"allowed_dirs": [bad]}})


def _policy_data() -> dict[str, Any]:
    import yaml

    from services.templates.policy import DEFAULT_POLICY_PATH

    data: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    return data
