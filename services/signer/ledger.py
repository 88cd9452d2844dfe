"""The signer's own record of every key version it has served: version -> SHA-256 fingerprint of the public key.

Why: a key store can lose a key and a new one can take its name (an OpenBao dev server restarted, a Vault
restored without its transit mount, a key directory wiped). "v1" would then name a different key, and
signatures made by the lost one would silently stop meaning anything. With this record the signer refuses
to start or to serve a key set in which a version it knows has another public key, or in which versions it
has served are missing, and it never creates a key under a name it has signed with before.

The file lives in AF_DATA_DIR (keep it on persistent storage for the vault backend too), holds only public
fingerprints, and is written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from services.common.errors import FailedPrecondition
from services.common.files import write_durably
from services.common.logs import log_event
from services.signer.service import KeySet
from services.templates.signature import fingerprint

log = logging.getLogger(__name__)


class KeyLedger:
    def __init__(self, path: Path, key_id: str) -> None:
        self.path = path
        self.key_id = key_id
        self._known: dict[int, str] = self._load()

    def _load(self) -> dict[int, str]:
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise FailedPrecondition(f"{self.path} is unreadable ({exc}); restore it from backup") from exc
        if doc.get("key_id") != self.key_id:
            raise FailedPrecondition(f"{self.path} records key {doc.get('key_id')!r}, not {self.key_id!r}")
        return {int(v): str(fp) for v, fp in doc.get("fingerprints", {}).items()}

    def empty(self) -> bool:
        return not self._known

    def describe_known(self) -> str:
        return f"v1..v{max(self._known)}" if self._known else "no versions"

    def check_and_record(self, keys: KeySet) -> None:
        """Refuse a key set that contradicts what this signer has served; record versions it has not seen."""
        if self._known and keys.latest_version < max(self._known):
            self._refuse(
                f"the key store's latest version of {self.key_id} is v{keys.latest_version}, but this signer has "
                f"served up to v{max(self._known)} ({self.path})"
            )
        new = {}
        for key in keys.keys:
            now = fingerprint(key.public_key_pem)
            seen = self._known.get(key.key_version)
            if seen is None:
                new[key.key_version] = now
            elif seen != now:
                self._refuse(
                    f"key {self.key_id} v{key.key_version} now has public key sha256 {now[:16]}..., but this signer "
                    f"recorded {seen[:16]}... for it ({self.path})"
                )
        if new:
            self._known.update(new)
            doc = {"key_id": self.key_id, "fingerprints": {str(v): fp for v, fp in sorted(self._known.items())}}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_durably(
                self.path,
                (json.dumps(doc, indent=2) + "\n").encode(),
                self.path.with_name(f".{self.path.name}.tmp"),
                mode=0o600,
            )

    def _refuse(self, what: str) -> None:
        log_event(log, "key store contradicts the signer's key ledger", logging.CRITICAL, detail=what)
        raise FailedPrecondition(
            f"{what}: the key store lost the key and another one took its name; refusing to sign or verify with "
            "it. Restore the key store from backup; to start over on purpose, revoke the old versions everywhere "
            "and move the ledger file aside."
        )
