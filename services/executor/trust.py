"""Local verification of templates before every run: signature, identity and policy.

Public keys come from the signer's GetPublicKeys, fetched at start-up, pushed by the signer's
WatchPublicKeys stream whenever the key set changes (a revocation reaches this process within about a
second), refreshed in the background as a fallback and refreshed at once (rate-limited, single-flight)
when a signature names a key version we do not hold. No signer call is made on the hot path.

A version that a fetch showed missing is not asked about again until the next key set arrives (any
refresh or push): a start-up warming hundreds of templates signed by a lost key waits for no one.

Each (key id, version) is pinned to the fingerprint of the public key first seen for it. A key set that
brings another public key for a pinned version (a key store lost and re-created under the same name) has
that version refused loudly: dropped from the keyring, the verified cache cleared, an error logged and
counted, until an operator revokes it (the pin lives as long as the process).

Caching a verification result is safe because everything it depends on is immutable or re-checked:
the key is (sha256 of the signed canonical bytes, the signature bytes, key id, key version), and a key
version's public key never changes. The only thing that can turn a good signature bad is revocation
(the minimum version rising) or a key version disappearing, so every cache hit re-checks both against
the current keyring, and a keyring whose minimum versions changed clears the cache outright. The policy
is loaded once per process, so its verdict on a given manifest cannot change while the entry lives.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.common.cache import LruTtlCache
from services.common.errors import AgentFactoryError, FailedPrecondition, InvalidArgument, PermissionDenied
from services.common.logs import log_event
from services.executor import metrics
from services.templates.manifest import Manifest
from services.templates.policy import Policy
from services.templates.published import PublishedTemplate
from services.templates.signature import Keyring, PublicKeyVersion, UnknownKeyVersion, fingerprint

log = logging.getLogger(__name__)

KeyFetcher = Callable[[], Awaitable[tuple[list[PublicKeyVersion], dict[str, int]]]]
"""Returns every live public key version and the minimum live version per key id."""

VERIFIED_TTL_SECONDS = 3600.0


@dataclass(frozen=True)
class Verified:
    manifest: Manifest
    key_id: str
    key_version: int


class Trust:
    def __init__(self, fetch_keys: KeyFetcher, policy: Policy, min_refresh_seconds: float = 1.0) -> None:
        self._fetch_keys = fetch_keys
        self.policy = policy
        self.keyring = Keyring()
        self.min_refresh_seconds = min_refresh_seconds
        self.has_keys = False
        self._last_refresh = 0.0
        self._refresh_lock = asyncio.Lock()
        self._verified: LruTtlCache[tuple[bytes, bytes, str, int], Verified] = LruTtlCache(
            "executor_verified", 4096, VERIFIED_TTL_SECONDS
        )
        self._pins: dict[tuple[str, int], str] = {}  # (key id, version) -> fingerprint first seen
        self.replaced: set[tuple[str, int]] = set()  # versions whose public key changed: refused for good
        self._missing: set[tuple[str, int]] = set()  # versions the current key set lacks (asked once)
        self._last_set: object = None  # what the last key set held, to tell a new one from a repeat

    async def refresh(self, *, only_if_stale: bool = False) -> None:
        """Fetch the keys and swap the keyring (a reference swap: readers never see a half-built one)."""
        requested = time.monotonic()
        async with self._refresh_lock:
            if only_if_stale:
                if self._last_refresh >= requested:
                    return  # a fetch that started after we asked already brought keys at least this new
                # Rate-limit by delaying, not by skipping: a key minted a moment after the last fetch
                # must still be seen, or its first signatures would be refused as unknown.
                wait = self.min_refresh_seconds - (time.monotonic() - self._last_refresh)
                if wait > 0:
                    await asyncio.sleep(wait)
            started = time.monotonic()
            try:
                keys, min_versions = await self._fetch_keys()
            except AgentFactoryError:
                metrics.KEY_REFRESHES.labels("error").inc()
                raise
            finally:
                self._last_refresh = started
            self.apply(keys, min_versions)
            metrics.KEY_REFRESHES.labels("ok").inc()

    def apply(self, keys: list[PublicKeyVersion], min_versions: dict[str, int]) -> None:
        """Install a key set (fetched or pushed), refusing any version whose public key changed."""
        kept = []
        held = []
        for key in keys:
            ref = (key.key_id, key.key_version)
            now = fingerprint(key.public_key_pem)
            held.append((ref, now))
            seen = self._pins.setdefault(ref, now)
            if seen != now and ref not in self.replaced:
                self.replaced.add(ref)
                metrics.KEY_REPLACED.inc()
                log_event(
                    log,
                    "a known key version now has another public key: refusing it",
                    logging.CRITICAL,
                    key_id=key.key_id,
                    key_version=key.key_version,
                    pinned_sha256=seen,
                    offered_sha256=now,
                )
            if ref not in self.replaced:
                kept.append(key)
        keyring = Keyring(kept, min_versions)
        if keyring.min_versions != self.keyring.min_versions or any(
            not keyring.has(*ref) for ref in self._pins if self.keyring.has(*ref)
        ):
            self._verified.clear()  # revocation or a lost version: nothing verified before is trusted
        self.keyring = keyring
        key_set = (frozenset(held), tuple(sorted(min_versions.items())))
        if key_set != self._last_set:  # only a different key set can hold a version that was missing
            self._missing = set()
            self._last_set = key_set
        self.has_keys = True

    def _live(self, key_id: str, version: int) -> bool:
        keyring = self.keyring
        return version >= keyring.min_versions.get(key_id, 1) and keyring.has(key_id, version)

    async def verify(
        self, template: PublishedTemplate, name: str, version: str, *, refresh_unknown: bool = True
    ) -> Verified:
        """Raise FailedPrecondition naming what is wrong; return the manifest to run (from the signed bytes).
        `refresh_unknown=False` (start-up warming) never waits for the signer about an unknown version."""
        sig = template.signature
        key = (hashlib.sha256(template.canonical_manifest).digest(), sig.signature, sig.key_id, sig.key_version)
        hit = self._verified.get(key)
        if hit is not None and self._live(sig.key_id, sig.key_version):
            return hit
        try:
            if (sig.key_id, sig.key_version) in self.replaced:
                raise FailedPrecondition(
                    f"signature key {sig.key_id} v{sig.key_version} was replaced: the signer now serves another "
                    "public key for that version; revoke it and re-sign"
                )
            try:
                template.verify(self.keyring)
            except UnknownKeyVersion:
                ref = (sig.key_id, sig.key_version)
                if ref in self._missing or not refresh_unknown:
                    raise  # the current key set already lacks it; the next one that arrives clears this
                # A rotation we have not seen yet (or a forged version): ask the signer once, rate-limited.
                await self.refresh(only_if_stale=True)
                try:
                    template.verify(self.keyring)
                except UnknownKeyVersion:
                    self._missing.add(ref)
                    raise
        except FailedPrecondition:
            metrics.VERIFICATION_FAILURES.labels("signature").inc()
            raise
        manifest = template.manifest
        if (manifest.name, manifest.version) != (name, version):
            metrics.VERIFICATION_FAILURES.labels("identity").inc()
            raise FailedPrecondition(
                f"the registry answered {name}@{version} with a template signed as {manifest.ref}; refusing it"
            )
        try:
            self.policy.check(manifest)
        except (PermissionDenied, InvalidArgument) as exc:
            metrics.VERIFICATION_FAILURES.labels("policy").inc()
            raise FailedPrecondition(f"{manifest.ref} violates this executor's policy: {exc.message}") from exc
        verified = Verified(manifest, sig.key_id, sig.key_version)
        self._verified.put(key, verified)
        return verified
