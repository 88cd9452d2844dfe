"""Local (embedded) key backend: versioned RSA-2048 keys in files under <data_dir>/keys/<key_name>/.

Layout:
    keys/<key_name>/            0700, owned by the signer's user
        v1.pem, v2.pem, ...     0600, PKCS#8 private keys
        metadata.json           0600, {"min_version", "latest_version", "versions": {"1": {"created_unix"}}}
        .lock                   flock: one signer process per key directory

Private keys are stored unencrypted: protection is the file mode plus the owning user, like an SSH
host key. Encrypting them would need a key-encryption secret, and a default one would be no
protection at all; use the vault backend where keys must never touch the signer's disk.

metadata.json is the source of truth for which versions exist and which are revoked. Every write is
atomic (temporary file, fsync, rename, fsync of the directory), so a crash leaves either the old or
the new state: a key file written by a rotation that crashed before its metadata update is not a
version yet, is never used, and is replaced by the next rotation.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common import dir_claim
from services.common.errors import FailedPrecondition, Unavailable
from services.common.files import write_durably
from services.common.logs import log_event
from services.signer.service import KeySet, check_key_name
from services.templates.signature import HASH, KEY_BITS, PADDING, PublicKeyVersion, SignatureRecord

log = logging.getLogger(__name__)

METADATA = "metadata.json"
KEY_FILE_RE = re.compile(r"\Av([1-9][0-9]*)\.pem\Z")
PUBLIC_EXPONENT = 65537


@dataclass
class _State:
    min_version: int
    latest_version: int
    created: dict[int, float]
    public: dict[int, PublicKeyVersion] = field(default_factory=dict)
    signing_key: rsa.RSAPrivateKey | None = None

    def to_json(self, key_id: str) -> bytes:
        doc = {
            "format": 1,
            "key_id": key_id,
            "min_version": self.min_version,
            "latest_version": self.latest_version,
            "versions": {str(v): {"created_unix": t} for v, t in sorted(self.created.items())},
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600) so that a crash leaves the old content or the new, never a mix."""
    write_durably(path, data, path.with_name(f".{path.name}.tmp"), mode=0o600)


def _check_private(path: Path, *, directory: bool) -> None:
    """Refuse files or directories that another user could read: the keys would no longer be ours alone."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise FailedPrecondition(f"refusing to use {path}: it is a symbolic link; key storage must be a real path")
    if st.st_uid != os.geteuid():
        raise FailedPrecondition(
            f"refusing to use {path}: it is owned by uid {st.st_uid}, not by the signer's uid {os.geteuid()}"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        wanted = "700" if directory else "600"
        raise FailedPrecondition(
            f"refusing to start: {path} has mode {mode:04o}, so group or other users can read the private "
            f"signing keys; fix it with `chmod {wanted} {path}` (and consider rotating the key)"
        )


class LocalKeyBackend:
    """Versioned RSA-2048 keys on local disk. Thread-safe; one process per key directory."""

    def __init__(self, data_dir: Path, key_name: str) -> None:
        self.key_id = check_key_name(key_name)
        self.dir = Path(data_dir) / "keys" / key_name
        self._lock = threading.Lock()
        self._state: _State | None = None
        self._claim: dir_claim.DirClaim | None = None

    def describe(self) -> str:
        return f"local key store {self.dir}"

    # --- start-up -------------------------------------------------------------------------------

    def open(self, create_if_missing: bool = True) -> None:
        with self._lock:
            created_dir = not self.dir.exists()
            self.dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.dir.mkdir(mode=0o700, exist_ok=True)
            if created_dir:
                os.chmod(self.dir, 0o700)  # mkdir's mode is filtered by the umask; be exact
            _check_private(self.dir, directory=True)
            self._take_lock()
            for leftover in self.dir.glob(".*.tmp"):
                leftover.unlink()  # an interrupted write; the rename never happened, so nothing used it
            key_files = sorted(p for p in self.dir.iterdir() if KEY_FILE_RE.fullmatch(p.name))
            for path in [*key_files, self.dir / METADATA]:
                if path.exists():
                    _check_private(path, directory=False)
            if (self.dir / METADATA).exists():
                state = self._load_metadata()
            elif key_files:
                raise FailedPrecondition(
                    f"{self.dir} holds key files but no {METADATA}: cannot tell which versions are revoked; "
                    f"restore {METADATA} from backup rather than guessing"
                )
            elif not create_if_missing:
                raise FailedPrecondition(
                    f"{self.dir} holds no keys, but this signer has signed with key {self.key_id} before (its key "
                    "ledger says so): the key store was lost. Restore it from backup; refusing to create a new "
                    "key under the same name"
                )
            else:
                state = self._create_first_version()
            self._load_keys(state)
            self._state = state
        log_event(
            log,
            "local key store open",
            dir=str(self.dir),
            min_version=state.min_version,
            latest_version=state.latest_version,
        )

    def _take_lock(self) -> None:
        try:
            self._claim = dir_claim.claim(self.dir)
        except dir_claim.DirInUse as exc:
            raise FailedPrecondition(
                f"another signer process is using {self.dir} (pid {exc.holder_pid or 'unknown'}); two writers "
                "would fork the key versions"
            ) from None

    def _load_metadata(self) -> _State:
        path = self.dir / METADATA
        try:
            doc = json.loads(path.read_bytes())
            min_version, latest = int(doc["min_version"]), int(doc["latest_version"])
            created = {int(v): float(info["created_unix"]) for v, info in doc["versions"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FailedPrecondition(f"{path} is unreadable ({exc!r}); restore it from backup") from exc
        if doc.get("key_id", self.key_id) != self.key_id:
            raise FailedPrecondition(f"{path} belongs to key {doc['key_id']!r}, not {self.key_id!r}")
        if not 1 <= min_version <= latest or any(v not in created for v in range(min_version, latest + 1)):
            raise FailedPrecondition(
                f"{path} is inconsistent: min_version={min_version}, latest_version={latest}, "
                f"versions={sorted(created)}; restore it from backup"
            )
        return _State(min_version, latest, created)

    def _load_keys(self, state: _State) -> None:
        for version in range(state.min_version, state.latest_version + 1):
            path = self.dir / f"v{version}.pem"
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except FileNotFoundError:
                raise FailedPrecondition(
                    f"{path} is missing but key version {version} is live (min_version={state.min_version}); "
                    "restore it from backup, or revoke it with SetMinimumKeyVersion on a restored copy"
                ) from None
            except (ValueError, TypeError) as exc:
                raise FailedPrecondition(f"{path} is not a readable PKCS#8 private key: {exc}") from exc
            if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != KEY_BITS:
                raise FailedPrecondition(f"{path} is not an RSA-{KEY_BITS} private key")
            state.public[version] = self._public(version, key, state.created[version])
            if version == state.latest_version:
                state.signing_key = key

    def _public(self, version: int, key: rsa.RSAPrivateKey, created: float) -> PublicKeyVersion:
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return PublicKeyVersion(self.key_id, version, pem.decode(), created)

    def _write_key(self, version: int) -> tuple[rsa.RSAPrivateKey, float]:
        key = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=KEY_BITS)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path = self.dir / f"v{version}.pem"
        if path.exists():
            log_event(log, "replacing a key file that never became a version", logging.WARNING, path=str(path))
        write_atomic(path, pem)
        return key, time.time()

    def _create_first_version(self) -> _State:
        _, created = self._write_key(1)
        state = _State(min_version=1, latest_version=1, created={1: created})
        write_atomic(self.dir / METADATA, state.to_json(self.key_id))
        log_event(log, "generated key version 1", key_id=self.key_id, dir=str(self.dir))
        return state

    # --- operations -----------------------------------------------------------------------------

    def _opened(self) -> _State:
        if self._state is None:
            raise Unavailable(f"{self.describe()} is not open yet")
        return self._state

    def sign(self, payload: bytes) -> SignatureRecord:
        with self._lock:
            state = self._opened()
            key, version = state.signing_key, state.latest_version
        assert key is not None  # loaded with the state
        return SignatureRecord(self.key_id, version, key.sign(payload, PADDING, HASH))

    def key_set(self) -> KeySet:
        with self._lock:
            state = self._opened()
            return KeySet(
                self.key_id,
                state.min_version,
                state.latest_version,
                tuple(state.public[v] for v in sorted(state.public)),
            )

    def rotate(self) -> None:
        with self._lock:
            state = self._opened()
            version = state.latest_version + 1
            key, created = self._write_key(version)
            new = _State(state.min_version, version, {**state.created, version: created}, dict(state.public), key)
            new.public[version] = self._public(version, key, created)
            write_atomic(self.dir / METADATA, new.to_json(self.key_id))  # the commit point
            self._state = new

    def set_min_version(self, version: int) -> None:
        with self._lock:
            state = self._opened()
            new = _State(
                version,
                state.latest_version,
                dict(state.created),
                {v: k for v, k in state.public.items() if v >= version},
                state.signing_key,
            )
            write_atomic(self.dir / METADATA, new.to_json(self.key_id))
            self._state = new

    def close(self) -> None:
        with self._lock:
            if self._claim is not None:
                self._claim.release()
                self._claim = None
            self._state = None
