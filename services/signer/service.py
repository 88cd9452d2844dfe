"""Signer domain: the key backend port and the service that signs, verifies and manages key versions.

No grpc here. Backends (adapters) implement `KeyBackend`; their methods may block (disk, RSA key
generation, HTTP to Vault), so `SignerService` always calls them in a worker thread and the event
loop keeps answering health checks and verifications meanwhile.

Verification never asks the backend: it goes through the shared `services.templates.signature.Keyring`
(the same code executors run offline), built from the backend's live public keys with the minimum
version enforced by the Keyring itself, whatever the backend also enforces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from services.common import audit
from services.common.errors import AgentFactoryError, FailedPrecondition, InvalidArgument
from services.common.logs import log_event
from services.signer import metrics
from services.templates.signature import Keyring, PublicKeyVersion, SignatureRecord, UnknownKeyVersion

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 1024 * 1024
# Safe as a file-name component (local backend) and as a transit key name (vault backend).
KEY_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

T = TypeVar("T")


def check_key_name(name: str) -> str:
    if not KEY_NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"key name {name!r} must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit",
            field="key_name",
        )
    return name


@dataclass(frozen=True)
class KeySet:
    """The live key versions of one key ring: every version from min_version to latest_version."""

    key_id: str
    min_version: int
    latest_version: int
    keys: tuple[PublicKeyVersion, ...]  # oldest first, only versions >= min_version

    def keyring(self) -> Keyring:
        return Keyring(self.keys, {self.key_id: self.min_version})

    def get(self, version: int) -> PublicKeyVersion:
        for key in self.keys:
            if key.key_version == version:
                return key
        raise FailedPrecondition(f"key {self.key_id} v{version} is not live")


class KeyBackend(Protocol):
    """Key custody. Methods may block; raise services.common.errors (Unavailable, FailedPrecondition)."""

    key_id: str

    def describe(self) -> str:
        """Where the keys live, for logs and error messages (never a secret)."""
        ...

    def open(self, create_if_missing: bool = True) -> None:
        """Prepare the key ring: create version 1 if there is none and `create_if_missing` (the ledger has
        no record of this key), else raise FailedPrecondition. Fails if it cannot be used safely."""
        ...

    def sign(self, payload: bytes) -> SignatureRecord:
        """Sign with the latest version: RSA-2048, PKCS#1 v1.5, SHA-256 (services.templates.signature)."""
        ...

    def key_set(self) -> KeySet:
        """The live versions with their public keys, and the min/latest bounds."""
        ...

    def rotate(self) -> None:
        """Create version latest+1, which signs from now on."""
        ...

    def set_min_version(self, version: int) -> None:
        """Revoke every version below `version`. The service has checked 1 <= current <= version <= latest."""
        ...

    def close(self) -> None: ...


class Ledger(Protocol):
    """What the signer remembers of the key versions it served (services/signer/ledger.py)."""

    def empty(self) -> bool: ...

    def describe_known(self) -> str: ...

    def check_and_record(self, keys: KeySet) -> None:
        """Raise FailedPrecondition when `keys` contradicts the record; record new versions."""
        ...


@dataclass(frozen=True)
class VerifyResult:
    valid: bool
    reason: str = ""


def check_min_version(requested: int, current_min: int, latest: int) -> None:
    """Revocation is one-way and cannot reach past the newest key (nothing would sign)."""
    if requested < 1:
        raise InvalidArgument("min_version must be at least 1 (key versions start at 1)", field="min_version")
    if requested > latest:
        raise FailedPrecondition(
            f"min_version {requested} exceeds the latest key version {latest}; rotate the key first"
        )
    if requested < current_min:
        raise FailedPrecondition(
            f"min_version {requested} is below the current minimum {current_min}: revocation cannot be undone"
        )


def check_payload(payload: bytes) -> None:
    if not payload:
        raise InvalidArgument("payload is empty: send the canonical manifest bytes to sign", field="payload")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument(
            f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes (1 MiB)", field="payload"
        )


class SignerService:
    """Sign, verify, list, rotate and revoke over one key backend.

    `key_cache_seconds` bounds how stale the verification keyring may be when another process shares
    the key ring (several signers on one Vault key); admin calls made here refresh it at once.
    """

    def __init__(
        self,
        backend: KeyBackend,
        *,
        key_cache_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        ledger: Ledger | None = None,
    ) -> None:
        self.backend = backend
        self.ledger = ledger
        self.key_cache_seconds = key_cache_seconds
        self._clock = clock
        self._keys: KeySet | None = None
        self._keyring = Keyring()
        self._loaded_at = float("-inf")
        self._admin_lock = asyncio.Lock()  # rotate and revoke one at a time, so the bounds checks hold
        self._refresh_lock = asyncio.Lock()
        # Key-set watchers wait on this; `_generation` grows each time a refresh finds another key set.
        self._changed = asyncio.Condition()
        self._generation = 0

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.to_thread(fn, *args)

    async def start(self) -> KeySet:
        # A key this signer has served before is never created afresh: a missing one is a lost key store.
        create = self.ledger is None or self.ledger.empty()
        await self._run(self.backend.open, create)
        return await self.refresh()

    async def refresh(self, *, unless_loaded_after: float | None = None) -> KeySet:
        async with self._refresh_lock:
            if unless_loaded_after is not None and self._keys is not None and self._loaded_at > unless_loaded_after:
                return self._keys  # another caller refreshed while we waited for the lock
            keys = await self._run(self.backend.key_set)
            if self.ledger is not None:
                await self._run(self.ledger.check_and_record, keys)
            changed = keys != self._keys
            self._keys, self._keyring, self._loaded_at = keys, keys.keyring(), self._clock()
            metrics.observe_key_set(keys)
        if changed:
            async with self._changed:
                self._generation += 1
                self._changed.notify_all()
        return keys

    async def watch_keys(self) -> AsyncIterator[KeySet]:
        """The current key set, then the new one after every change this process sees (its own rotations
        and revocations at once; another replica's at the next periodic refresh, see `refresh_every`)."""
        keys = await self._current()
        async with self._changed:
            seen = self._generation
        yield keys
        while True:
            async with self._changed:
                while self._generation == seen:
                    await self._changed.wait()
                seen, current = self._generation, self._keys
            assert current is not None  # set before the first notification
            yield current

    async def refresh_every(self, seconds: float, stop: asyncio.Event) -> None:
        """Re-read the backend periodically so watchers hear of changes made elsewhere (a shared Vault key)."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), seconds)
            except TimeoutError:
                try:
                    await self.refresh()
                except AgentFactoryError as exc:
                    log_event(log, "periodic key refresh failed", logging.WARNING, error=exc.message)

    async def _current(self, *, max_age: float | None = None) -> KeySet:
        age = self._clock() - self._loaded_at
        if self._keys is None or age > (self.key_cache_seconds if max_age is None else max_age):
            return await self.refresh(unless_loaded_after=self._loaded_at)
        return self._keys

    async def sign(self, payload: bytes) -> SignatureRecord:
        check_payload(payload)
        record = await self._run(self.backend.sign, payload)
        # Self-check with the verifiers' own code: a backend answering with another scheme (e.g. a
        # transit default of PSS) or a key we do not publish must never reach the registry.
        keys = await self._current()
        if not self._keyring.has(record.key_id, record.key_version):
            keys = await self.refresh()
        try:
            self._keyring.verify(payload, record)
        except FailedPrecondition as exc:
            log_event(log, "signature self-check failed", logging.ERROR, reason=exc.message)
            raise FailedPrecondition(
                f"the {self.backend.describe()} produced a signature that does not verify with its own public key "
                f"v{record.key_version}; refusing to return it"
            ) from exc
        # Recorded with the signature: a verifier can then tell the key that signed from a replacement.
        held = self._keyring.fingerprint_of(record.key_id, record.key_version)
        record = dataclasses.replace(record, key_fingerprint=held or "")
        metrics.SIGNATURES.labels(str(record.key_version)).inc()
        audit.record(
            "sign",
            target=f"{record.key_id}/v{record.key_version}",
            key_id=record.key_id,
            key_version=record.key_version,
            latest_version=keys.latest_version,
            payload_bytes=len(payload),
            payload_sha256=hashlib.sha256(payload).hexdigest(),
        )
        return record

    async def verify(self, payload: bytes, record: SignatureRecord) -> VerifyResult:
        check_payload(payload)
        if not record.signature:
            raise InvalidArgument("signature.signature is empty", field="signature.signature")
        if not record.key_id:
            raise InvalidArgument("signature.key_id is empty: name the key ring that signed", field="signature.key_id")
        if record.key_version < 1:
            raise InvalidArgument("signature.key_version must be at least 1", field="signature.key_version")
        result = await self._verify(payload, record)
        metrics.VERIFICATIONS.labels(result[0]).inc()
        return VerifyResult(result[0] == "valid", result[1])

    async def _verify(self, payload: bytes, record: SignatureRecord) -> tuple[str, str]:
        keys = await self._current()
        if record.key_id != keys.key_id:
            return "unknown_key", f"unknown key id {record.key_id!r}; this signer holds {keys.key_id!r}"
        if record.key_version > keys.latest_version:
            # Maybe another signer rotated since we last looked; refresh at most once a second for this.
            keys = await self._current(max_age=1.0)
        try:
            self._keyring.verify(payload, record)
        except UnknownKeyVersion:
            return "unknown_version", (
                f"key {record.key_id} v{record.key_version} does not exist (latest is v{keys.latest_version})"
            )
        except FailedPrecondition as exc:
            kind = "revoked" if record.key_version < keys.min_version else "mismatch"
            return kind, exc.message
        return "valid", ""

    async def public_keys(self) -> KeySet:
        return await self.refresh()

    async def rotate(self) -> PublicKeyVersion:
        async with self._admin_lock:
            before = await self.refresh()
            await self._run(self.backend.rotate)
            after = await self.refresh()
        audit.record(
            "rotate",
            target=f"{after.key_id}/v{after.latest_version}",
            key_id=after.key_id,
            previous_version=before.latest_version,
            key_version=after.latest_version,
        )
        return after.get(after.latest_version)

    async def set_min_version(self, version: int) -> int:
        async with self._admin_lock:
            before = await self.refresh()
            check_min_version(version, before.min_version, before.latest_version)
            if version != before.min_version:
                await self._run(self.backend.set_min_version, version)
            after = await self.refresh()
        if version != before.min_version:
            audit.record(
                "revoke",
                target=f"{after.key_id}/v<{after.min_version}",
                key_id=after.key_id,
                previous_min_version=before.min_version,
                min_version=after.min_version,
                revoked_versions=list(range(before.min_version, after.min_version)),
            )
        return after.min_version

    def close(self) -> None:
        self.backend.close()
