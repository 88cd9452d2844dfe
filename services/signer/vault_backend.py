"""Vault/OpenBao transit key backend (hvac). The private keys never leave Vault.

- The transit mount is enabled if missing; the key is created as a non-exportable `rsa-2048` key.
- Sign asks for `pkcs1v15` over `sha2-256` explicitly: transit defaults to PSS with salt_length=auto,
  which our verifiers (services.templates.signature) would reject.
- Signatures come back as `vault:v<N>:<base64>`; N becomes key_version and the raw bytes are ours.
- Public keys per version come from read_key (`keys[<v>].public_key`), not export_key (which needs
  an exportable key and would hand out the private half).
- Revocation sets `min_decryption_version`. In OpenBao 2.7 transit this also bounds verification
  ("signature version is disallowed by policy (too old)") and hides older versions from read_key; the
  signer enforces the same bound itself through the Keyring. Transit allows lowering it again, so the
  service refuses to (revocation is one-way here).

hvac is synchronous: the service calls these methods in a worker thread. Every HTTP call carries the
client timeout, so a hung Vault becomes UNAVAILABLE instead of a stuck RPC.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from services.common.errors import FailedPrecondition, Unavailable
from services.common.logs import log_event
from services.signer.service import KeySet, check_key_name
from services.templates.signature import KEY_BITS, PublicKeyVersion, SignatureRecord

log = logging.getLogger(__name__)

KEY_TYPE = f"rsa-{KEY_BITS}"
HASH_ALGORITHM = "sha2-256"
SIGNATURE_ALGORITHM = "pkcs1v15"

T = TypeVar("T")


def parse_transit_signature(value: str) -> tuple[int, bytes]:
    """`vault:v3:<base64>` -> (3, raw signature bytes)."""
    prefix, _, rest = value.partition(":")
    version, _, encoded = rest.partition(":")
    if prefix != "vault" or not version.startswith("v") or not version[1:].isdigit() or not encoded:
        raise ValueError(f"not a transit signature: {value[:24]!r}...")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"transit signature is not base64: {exc}") from exc
    return int(version[1:]), raw


def parse_creation_time(value: str) -> float:
    """Transit reports RFC 3339 with nanoseconds (2026-11-21T05:41:05.123456789Z); keep microseconds."""
    text = value.strip().replace("Z", "+00:00")
    head, dot, tail = text.partition(".")
    if dot:
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(text).timestamp()


class VaultKeyBackend:
    """One transit key on one Vault/OpenBao server."""

    def __init__(self, addr: str, token: str, key_name: str, *, mount: str = "transit", timeout: float = 5.0) -> None:
        self.key_id = check_key_name(key_name)
        self.addr = addr
        self.mount = mount.strip("/")
        # hvac hands the timeout to requests, which takes fractional seconds; types-hvac says int.
        self.client = hvac.Client(url=addr, token=token, timeout=timeout)  # type: ignore[arg-type]

    def describe(self) -> str:
        return f"Vault transit key {self.mount}/{self.key_id} at {self.addr}"

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one hvac call and turn its failures into domain errors naming the Vault address."""
        try:
            return fn(*args, **kwargs)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise Unavailable(f"Vault at {self.addr} is unreachable ({what}): {type(exc).__name__}") from exc
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as exc:
            raise FailedPrecondition(
                f"Vault at {self.addr} refused the signer's token ({what}): check AF_VAULT_TOKEN and its policy "
                f"on {self.mount}/"
            ) from exc
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath) as exc:
            raise FailedPrecondition(f"Vault at {self.addr} rejected {what}: {_vault_message(exc)}") from exc
        except hvac.exceptions.VaultError as exc:  # sealed, 5xx, rate limited: try again later
            raise Unavailable(f"Vault at {self.addr} failed {what}: {_vault_message(exc)}") from exc

    def open(self, create_if_missing: bool = True) -> None:
        transit = self.client.secrets.transit
        mounts = self._call("listing secrets engines", self.client.sys.list_mounted_secrets_engines)
        table = mounts.get("data", mounts)
        if f"{self.mount}/" not in table:
            self._call(
                f"enabling transit at {self.mount}/",
                self.client.sys.enable_secrets_engine,
                "transit",
                path=self.mount,
            )
            log_event(log, "enabled transit secrets engine", addr=self.addr, mount=self.mount)
        try:
            data = self._read()
        except FailedPrecondition as exc:
            if not isinstance(exc.__cause__, hvac.exceptions.InvalidPath):
                raise
            if not create_if_missing:
                raise FailedPrecondition(
                    f"{self.describe()} does not exist, but this signer has signed with it before (its key ledger "
                    "says so): Vault lost its storage or the key was deleted. Refusing to create a new key under "
                    "the same name, which would make old version numbers name another key; restore Vault from "
                    "backup"
                ) from exc
            self._call(
                f"creating key {self.key_id}",
                transit.create_key,
                name=self.key_id,
                key_type=KEY_TYPE,
                exportable=False,
                allow_plaintext_backup=False,
                mount_point=self.mount,
            )
            log_event(log, "created transit key", addr=self.addr, mount=self.mount, key=self.key_id)
            data = self._read()
        if data.get("type") != KEY_TYPE:
            raise FailedPrecondition(
                f"{self.describe()} has type {data.get('type')!r}; the signer needs a {KEY_TYPE} key"
            )
        if data.get("exportable"):
            raise FailedPrecondition(
                f"{self.describe()} is exportable, so its private key can leave Vault; create a new "
                "non-exportable key and point AF_SIGNER_KEY_NAME at it"
            )

    def _read(self) -> dict[str, Any]:
        reply = self._call(
            f"reading key {self.key_id}", self.client.secrets.transit.read_key, name=self.key_id, mount_point=self.mount
        )
        data: dict[str, Any] = reply["data"]
        return data

    def sign(self, payload: bytes) -> SignatureRecord:
        reply = self._call(
            "signing",
            self.client.secrets.transit.sign_data,
            name=self.key_id,
            hash_input=base64.b64encode(payload).decode(),
            hash_algorithm=HASH_ALGORITHM,
            signature_algorithm=SIGNATURE_ALGORITHM,
            mount_point=self.mount,
        )
        try:
            version, raw = parse_transit_signature(reply["data"]["signature"])
        except (KeyError, TypeError, ValueError) as exc:
            raise Unavailable(f"Vault at {self.addr} returned an unreadable signature: {exc}") from exc
        return SignatureRecord(self.key_id, version, raw)

    def key_set(self) -> KeySet:
        data = self._read()
        latest = int(data["latest_version"])
        minimum = max(1, int(data.get("min_decryption_version") or 1))
        keys = []
        for name, info in sorted(data["keys"].items(), key=lambda item: int(item[0])):
            version = int(name)
            if version < minimum:
                continue  # transit hides these already; the bound is ours too
            keys.append(
                PublicKeyVersion(self.key_id, version, info["public_key"], parse_creation_time(info["creation_time"]))
            )
        return KeySet(self.key_id, minimum, latest, tuple(keys))

    def rotate(self) -> None:
        self._call("rotating the key", self.client.secrets.transit.rotate_key, name=self.key_id, mount_point=self.mount)

    def set_min_version(self, version: int) -> None:
        self._call(
            f"setting min_decryption_version={version}",
            self.client.secrets.transit.update_key_configuration,
            name=self.key_id,
            min_decryption_version=version,
            mount_point=self.mount,
        )

    def close(self) -> None:
        self.client.adapter.close()


def _vault_message(exc: hvac.exceptions.VaultError) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        return "; ".join(str(e) for e in errors)
    return str(exc).split(", on ", 1)[0] or type(exc).__name__
