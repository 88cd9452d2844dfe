"""Trust and key sets (issue 10, items 10-12): pushed key sets, unknown versions asked about once, and a
known version whose public key changed is refused loudly."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.errors import FailedPrecondition
from services.executor.trust import Trust
from services.templates.policy import Policy
from services.templates.signature import PublicKeyVersion, UnknownKeyVersion
from tests.unit.executor.signed import Keys, pem, public_pem, template, trust_with


def impostor(version: int) -> PublicKeyVersion:
    """Another RSA key under a known version: what a re-created transit key looks like."""
    return PublicKeyVersion(
        "templates", version, public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    )


async def test_a_pushed_revocation_refuses_a_cached_verification_at_once() -> None:
    trust = await trust_with(Keys([1, 2]))
    await trust.verify(template(version=1), "echo", "1.0.0")  # verified and cached
    trust.apply([pem(2)], {"templates": 2})  # what WatchPublicKeys sends after SetMinimumKeyVersion(2)
    with pytest.raises(FailedPrecondition, match="v1 is revoked"):
        await trust.verify(template(version=1), "echo", "1.0.0")
    assert (await trust.verify(template(version=2), "echo", "1.0.0")).key_version == 2


async def test_an_unknown_version_is_asked_about_once_per_key_set() -> None:
    keys = Keys([1])
    trust = Trust(keys, Policy.load(), min_refresh_seconds=30.0)  # a second ask would wait 30 s
    await trust.refresh()
    lost = template(version=2)  # signed by a version the signer no longer serves
    with pytest.raises(UnknownKeyVersion):
        await trust.verify(lost, "echo", "1.0.0", refresh_unknown=False)  # start-up: no signer call
    assert keys.calls == 1
    trust.min_refresh_seconds = 0.0
    with pytest.raises(UnknownKeyVersion):
        await trust.verify(lost, "echo", "1.0.0")  # a run: one refresh
    trust.min_refresh_seconds = 30.0
    for _ in range(200):  # 203 templates signed by a lost key took 207 s to start before this
        with pytest.raises(UnknownKeyVersion):
            await trust.verify(lost, "echo", "1.0.0")
    assert keys.calls == 2
    trust.apply([pem(1)], {"templates": 1})  # the same key set pushed again: nothing new to ask about
    with pytest.raises(UnknownKeyVersion):
        await trust.verify(lost, "echo", "1.0.0")
    assert keys.calls == 2
    trust.apply([pem(1), pem(2)], {"templates": 1})  # the key comes back (pushed): asked again, found
    assert (await trust.verify(lost, "echo", "1.0.0")).key_version == 2


async def test_a_known_version_with_another_public_key_is_refused_for_good() -> None:
    trust = await trust_with(Keys([1]))
    await trust.verify(template(version=1), "echo", "1.0.0")
    trust.apply([impostor(1)], {"templates": 1})
    assert trust.replaced == {("templates", 1)}
    with pytest.raises(FailedPrecondition, match="v1 was replaced"):
        await trust.verify(template(version=1), "echo", "1.0.0")  # the cached verification is gone too
    trust.apply([pem(1)], {"templates": 1})  # even the original coming back does not clear it
    with pytest.raises(FailedPrecondition, match="v1 was replaced"):
        await trust.verify(template(version=1), "echo", "1.0.0")
