"""A stored template row made back into a PublishedTemplate: what both registry stores (SQLite + files,
PostgreSQL) do once they hold the row's columns and its canonical manifest, checked against its sha256."""

from __future__ import annotations

from services.common.errors import DataLoss
from services.templates.manifest import manifest_from_canonical
from services.templates.published import PublishedTemplate
from services.templates.signature import SignatureRecord


def stored_template(
    name: str,
    version: str,
    canonical: bytes,
    signature: SignatureRecord,
    module_size: int,
    revision: int,
    publish_time: float,
    deprecated: bool,
    deprecation_reason: str,
) -> PublishedTemplate:
    """DataLoss when the canonical manifest, whose bytes matched their recorded digest, does not parse."""
    try:
        manifest = manifest_from_canonical(canonical)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataLoss(f"stored manifest {name}@{version} does not parse: {exc!r}") from exc
    return PublishedTemplate(
        manifest=manifest,
        canonical_manifest=canonical,
        signature=signature,
        module_size=module_size,
        revision=revision,
        publish_time=publish_time,
        deprecated=deprecated,
        deprecation_reason=deprecation_reason,
    )
