"""SignerService.watch_keys: the key set first, then once per change (rotation, revocation), nothing else."""

from __future__ import annotations

import asyncio

from services.signer.service import KeySet, SignerService
from services.templates.signature import fingerprint


async def _next(stream: object) -> KeySet:
    return await stream.__anext__()  # type: ignore[attr-defined]  # no time bound: pytest's timeout ends a hang


async def test_watch_sends_the_key_set_then_every_change(service: SignerService) -> None:
    stream = service.watch_keys()
    first = await _next(stream)
    assert (first.min_version, first.latest_version) == (1, 1)
    await service.rotate()
    rotated = await _next(stream)
    assert (rotated.min_version, rotated.latest_version) == (1, 2)
    await service.set_min_version(2)
    revoked = await _next(stream)
    assert (revoked.min_version, [k.key_version for k in revoked.keys]) == (2, [2])
    await stream.aclose()


async def test_a_refresh_that_finds_nothing_new_sends_nothing(service: SignerService) -> None:
    stream = service.watch_keys()
    await _next(stream)
    pending = asyncio.ensure_future(stream.__anext__())
    await service.refresh()
    await service.public_keys()
    await asyncio.sleep(0.05)
    assert not pending.done()
    await service.rotate()
    assert (await pending).latest_version == 2
    await stream.aclose()


async def test_every_watcher_hears_a_change(service: SignerService) -> None:
    streams = [service.watch_keys() for _ in range(3)]
    for stream in streams:
        await _next(stream)
    await service.rotate()
    assert [(await _next(s)).latest_version for s in streams] == [2, 2, 2]
    for stream in streams:
        await stream.aclose()


async def test_signatures_carry_the_fingerprint_of_the_key_that_made_them(service: SignerService) -> None:
    keys = await service.public_keys()
    record = await service.sign(b'{"name":"a"}')
    assert record.key_fingerprint == fingerprint(keys.get(1).public_key_pem)
