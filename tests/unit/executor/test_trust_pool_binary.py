"""Local verification (signature, digest, revocation, key refresh), the worker pool, and binary bounds."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import wasmtime

from services.common.errors import FailedPrecondition, ResourceExhausted
from services.executor.modules import ModuleCache
from services.executor.pool import WorkerPool
from services.executor.sandbox import Sandbox
from services.executor.trust import Trust
from services.executor.wasm_binary import check_bounds, count_imports
from services.templates.policy import Policy
from services.templates.published import PublishedTemplate
from tests.unit.executor.signed import Keys, template, trust_with


async def test_verifies_and_caches_without_calling_the_signer_again() -> None:
    keys = Keys([1])
    trust = await trust_with(keys)
    verified = await trust.verify(template(), "echo", "1.0.0")
    assert verified.manifest.name == "echo" and verified.key_version == 1
    await trust.verify(template(), "echo", "1.0.0")
    assert keys.calls == 1


async def test_a_key_minted_just_after_a_refresh_is_waited_for_not_refused() -> None:
    # The rate limit delays the refresh an unknown version asks for; it never skips it.
    keys = Keys([1])
    trust = Trust(keys, Policy.load(), min_refresh_seconds=0.3)
    await trust.refresh()
    keys.versions = [1, 2]  # a rotation right after our refresh
    verified = await trust.verify(template(version=2), "echo", "1.0.0")
    assert verified.key_version == 2 and keys.calls == 2


async def test_tampered_manifest_and_swapped_signature_are_refused() -> None:
    trust = await trust_with(Keys([1]))
    good, other = template("echo"), template("other")
    flipped = bytearray(good.canonical_manifest)
    flipped[10] ^= 1
    with pytest.raises(FailedPrecondition, match="altered"):
        await trust.verify(
            PublishedTemplate(good.manifest, bytes(flipped), good.signature, 10, 1, 0.0), "echo", "1.0.0"
        )
    swapped = PublishedTemplate(good.manifest, good.canonical_manifest, other.signature, 10, 1, 0.0)
    with pytest.raises(FailedPrecondition, match="altered"):
        await trust.verify(swapped, "echo", "1.0.0")
    with pytest.raises(FailedPrecondition, match="signed as other"):
        await trust.verify(other, "echo", "1.0.0")


async def test_unknown_key_version_triggers_a_refresh() -> None:
    keys = Keys([1])
    trust = await trust_with(keys)
    keys.versions = [1, 2]  # the signer rotated after our last fetch
    assert (await trust.verify(template(version=2), "echo", "1.0.0")).key_version == 2
    assert keys.calls == 2


async def test_revocation_invalidates_cached_verifications() -> None:
    keys = Keys([1, 2])
    trust = await trust_with(keys)
    await trust.verify(template(version=1), "echo", "1.0.0")
    keys.minimum = 2
    await trust.refresh()
    with pytest.raises(FailedPrecondition, match="revoked"):
        await trust.verify(template(version=1), "echo", "1.0.0")


def test_flipped_module_byte_is_refused_before_compiling(tmp_path: Path) -> None:
    sandbox = Sandbox.__new__(Sandbox)  # compile is never reached: no engine needed
    cache = ModuleCache.__new__(ModuleCache)
    cache.sandbox, cache.max_bytes, cache.max_imports = sandbox, 1 << 20, 64
    wasm = bytes(wasmtime.wat2wasm("(module)"))
    digest = hashlib.sha256(wasm).hexdigest()
    with pytest.raises(FailedPrecondition, match="digest mismatch"):
        cache.compile(digest, wasm[:-1] + bytes([wasm[-1] ^ 1]))


def test_module_bounds_checked_before_compile() -> None:
    imports = "".join(f'(import "m" "f{i}" (func))' for i in range(5))
    wasm = bytes(wasmtime.wat2wasm(f"(module {imports})"))
    assert count_imports(wasm) == 5
    with pytest.raises(FailedPrecondition, match="max_imports"):
        check_bounds(wasm, 1 << 20, 4)
    with pytest.raises(FailedPrecondition, match="max_bytes"):
        check_bounds(wasm, 10, 64)
    with pytest.raises(FailedPrecondition, match="not a WebAssembly"):
        check_bounds(b"\x7fELF....", 1 << 20, 64)


def test_pool_full_is_resource_exhausted_and_it_shrinks_when_idle() -> None:
    pool = WorkerPool(min_workers=0, max_workers=2, max_queue=1, idle_seconds=0.1)
    release = threading.Event()
    for _ in range(3):  # two running, one queued
        pool.submit(release.wait)
    with pytest.raises(ResourceExhausted, match="retry on another executor"):
        pool.submit(release.wait)
    # The second thread may not have taken its job yet (busy 1, queued 2): wait for it to.
    waited = threading.Event()
    for _ in range(100):
        if pool.capacity().busy == 2:
            break
        waited.wait(0.02)
    cap = pool.capacity()
    assert (cap.workers, cap.busy, cap.queued) == (2, 2, 1)
    release.set()
    deadline = threading.Event()
    for _ in range(50):
        if pool.capacity().workers == 0:
            break
        deadline.wait(0.05)
    assert pool.capacity().workers == 0
    pool.close()
