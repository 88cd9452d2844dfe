"""Publishing read-only template files: their bytes follow the module's in the chunk stream, land in
the signed manifest by digest, are stored once, and every mistake is INVALID_ARGUMENT/FAILED_PRECONDITION
naming what to fix."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.registry.service import PublishResult, Registry
from services.registry.storage import RegistryStore
from tests.unit.registry.conftest import WASM, manifest

WORDS = b"apple\nbanana\ncherry\n"
CONFIG = b'{"greeting": "hi"}'


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def publish_files(
    registry: Registry, raw: bytes, files: dict[str, bytes], module: bytes = WASM, chunk: int = 7
) -> PublishResult:
    """Chunks cut every `chunk` bytes, so they span the module's end and each file's."""
    stream = module + b"".join(files.values())
    listed = [(path, len(data)) for path, data in files.items()]
    return await registry.publish(raw, len(module), pieces(stream, chunk), listed)


async def test_files_land_in_the_signed_manifest_and_the_store(registry: Registry, store: RegistryStore) -> None:
    result = await publish_files(registry, manifest("a"), {"/data/words.txt": WORDS, "/data/conf/c.json": CONFIG})
    files = result.template.manifest.files
    assert files["/data/words.txt"].sha256 == hashlib.sha256(WORDS).hexdigest()
    assert files["/data/conf/c.json"].size == len(CONFIG)
    assert b'"/data/words.txt"' in result.template.canonical_manifest
    with store.open_blob(hashlib.sha256(WORDS).hexdigest()) as handle:
        assert handle.read() == WORDS


async def test_the_same_bytes_are_one_blob_and_a_child_inherits_files(registry: Registry, store: RegistryStore) -> None:
    await publish_files(registry, manifest("a"), {"/data/words.txt": WORDS})
    await publish_files(registry, manifest("b"), {"/data/other.txt": WORDS})
    blobs = [p for p in store.blobs_dir.glob("*/*") if p.name == hashlib.sha256(WORDS).hexdigest()]
    assert len(blobs) == 1
    child = await registry.publish(manifest("c", extends="a@1.0.0"), 0, pieces(b"", 1))
    assert child.template.manifest.files == (await registry.get("a", "1.0.0")).manifest.files


async def test_a_file_declared_but_never_uploaded_is_refused(registry: Registry) -> None:
    files = {"/data/x": {"sha256": "ab" * 32, "size": 3}}
    with pytest.raises(FailedPrecondition, match="is not stored; upload it"):
        await publish_files(registry, manifest("a", files=files), {})


async def test_a_declared_digest_must_match_the_upload(registry: Registry) -> None:
    files = {"/data/words.txt": {"sha256": "ab" * 32, "size": len(WORDS)}}
    with pytest.raises(InvalidArgument, match="does not match the uploaded file"):
        await publish_files(registry, manifest("a", files=files), {"/data/words.txt": WORDS})


@pytest.mark.parametrize(
    ("listed", "sent", "message"),
    [
        ([("/data/a", 5)], b"abc", "ended after 3 of file /data/a's 5 bytes"),
        ([("/data/a", 2)], b"abc", "more bytes arrived than the header declares"),
        ([("/data/a", 1), ("/data/a", 1)], b"ab", "uploaded twice"),
        ([("/etc/a", 1)], b"a", r"rule files.allowed_dirs"),
        ([("/data/a", 17 * 1024 * 1024)], b"", r"rule files.max_file_bytes"),
        ([(f"/data/f{i}", 0) for i in range(65)], b"", r"rule files.max_count"),
        ([("/data/../x", 1)], b"a", "'..' component"),
    ],
)
async def test_bad_uploads_are_invalid_argument(
    registry: Registry, listed: list[tuple[str, int]], sent: bytes, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await registry.publish(manifest("a"), len(WASM), pieces(WASM + sent, 4), listed)


async def test_an_empty_file_is_a_file(registry: Registry) -> None:
    result = await publish_files(registry, manifest("a"), {"/data/empty": b""})
    assert result.template.manifest.files["/data/empty"].size == 0
