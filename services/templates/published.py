"""A published template as every service sees it: the resolved manifest, the exact bytes that were
signed, the signature and the registry's bookkeeping. Domain code passes this around; the protobuf
form lives in services/templates/messages.py."""

from __future__ import annotations

from dataclasses import dataclass, replace

from services.common.errors import FailedPrecondition
from services.templates.manifest import Manifest
from services.templates.signature import Keyring, SignatureRecord


@dataclass(frozen=True)
class PublishedTemplate:
    manifest: Manifest
    canonical_manifest: bytes
    signature: SignatureRecord
    module_size: int
    revision: int
    publish_time: float
    deprecated: bool = False
    deprecation_reason: str = ""

    @property
    def ref(self) -> str:
        return self.manifest.ref

    def verify(self, keyring: Keyring) -> None:
        """Check the signature over the canonical bytes and that the manifest is what those bytes say.
        Raises FailedPrecondition (or UnknownKeyVersion) naming what is wrong."""
        keyring.verify(self.canonical_manifest, self.signature)
        if self.manifest.canonical_bytes() != self.canonical_manifest:
            raise FailedPrecondition(f"template {self.ref}: the manifest does not match its signed canonical bytes")

    def deprecate(self, reason: str) -> PublishedTemplate:
        return replace(self, deprecated=True, deprecation_reason=reason)
