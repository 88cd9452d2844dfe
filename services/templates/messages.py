"""Conversions between the trust domain (services.templates) and its protobuf messages.

Used by every servicer and client that sends or receives templates, signatures or public keys, so the
mapping exists once.
A verifier must trust `canonical_manifest` (the signed bytes), never the `manifest` message:
`template_from_proto` therefore rebuilds the manifest from the canonical bytes and ignores the message.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from agentfactory.registry.v1 import template_pb2
from agentfactory.signer.v1 import signer_service_pb2
from services.common.errors import FailedPrecondition
from services.common.timestamps import to_timestamp, to_unix
from services.templates.manifest import LIMIT_KEYS, Limits, Manifest, TemplateFile, manifest_from_canonical
from services.templates.published import PublishedTemplate
from services.templates.signature import PublicKeyVersion, SignatureRecord

_ALGORITHM = signer_service_pb2.SIGNATURE_ALGORITHM_RSA_PKCS1V15_SHA256


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def _ints_back(value: Any) -> Any:
    """Struct stores every number as a double; give whole numbers back as ints, as the JSON had them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints_back(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints_back(v) for v in value]
    return value


def manifest_to_proto(manifest: Manifest) -> template_pb2.Manifest:
    return template_pb2.Manifest(
        name=manifest.name,
        version=manifest.version,
        extends=manifest.extends,
        description=manifest.description,
        role=manifest.role,
        tools=list(manifest.tools),
        limits=template_pb2.Limits(**manifest.limits.to_dict()),
        env=dict(manifest.env),
        args=list(manifest.args),
        labels=dict(manifest.labels),
        module_sha256=manifest.module_sha256,
        input_schema=_struct(dict(manifest.input_schema)),
        output_schema=_struct(dict(manifest.output_schema)),
        http_hosts=list(manifest.http_hosts),
        retryable=manifest.retryable,
        files={path: template_pb2.TemplateFile(sha256=f.sha256, size=f.size) for path, f in manifest.files.items()},
    )


def manifest_from_proto(message: template_pb2.Manifest) -> Manifest:
    """For display and tests. Numbers in the schema hints come back as ints when whole (Struct has no ints)."""
    return Manifest(
        name=message.name,
        version=message.version,
        extends=message.extends,
        description=message.description,
        role=message.role,
        tools=tuple(message.tools),
        limits=Limits(**{key: getattr(message.limits, key) for key in LIMIT_KEYS}),
        env=dict(message.env),
        args=tuple(message.args),
        labels=dict(message.labels),
        module_sha256=message.module_sha256,
        input_schema=_ints_back(json_format.MessageToDict(message.input_schema)),
        output_schema=_ints_back(json_format.MessageToDict(message.output_schema)),
        http_hosts=tuple(message.http_hosts),
        retryable=message.retryable,
        files={path: TemplateFile(f.sha256, f.size) for path, f in sorted(message.files.items())},
    )


def signature_to_proto(record: SignatureRecord) -> signer_service_pb2.Signature:
    return signer_service_pb2.Signature(
        key_id=record.key_id,
        key_version=record.key_version,
        algorithm=_ALGORITHM,
        signature=record.signature,
        key_fingerprint_sha256=record.key_fingerprint,
    )


def signature_from_proto(message: signer_service_pb2.Signature) -> SignatureRecord:
    if message.algorithm != _ALGORITHM:
        raise FailedPrecondition(
            f"signature algorithm {signer_service_pb2.SignatureAlgorithm.Name(message.algorithm)} is not supported; "
            "expected SIGNATURE_ALGORITHM_RSA_PKCS1V15_SHA256"
        )
    return SignatureRecord(
        key_id=message.key_id,
        key_version=message.key_version,
        signature=message.signature,
        key_fingerprint=message.key_fingerprint_sha256,
    )


def key_set_from_proto(
    reply: signer_service_pb2.GetPublicKeysResponse | signer_service_pb2.WatchPublicKeysResponse,
) -> tuple[list[PublicKeyVersion], dict[str, int]]:
    """The public keys a signer serves, and the lowest version of each key id that still verifies
    (empty when it names none)."""
    keys = [
        PublicKeyVersion(
            key_id=key.key_id,
            key_version=key.key_version,
            public_key_pem=key.public_key_pem,
            created_unix=key.create_time.ToNanoseconds() / 1e9,
        )
        for key in reply.keys
    ]
    return keys, {key.key_id: reply.min_version for key in keys} if reply.min_version else {}


def template_to_proto(template: PublishedTemplate) -> template_pb2.Template:
    return template_pb2.Template(
        manifest=manifest_to_proto(template.manifest),
        canonical_manifest=template.canonical_manifest,
        signature=signature_to_proto(template.signature),
        module_size=template.module_size,
        deprecated=template.deprecated,
        deprecation_reason=template.deprecation_reason,
        publish_time=to_timestamp(template.publish_time),
        revision=template.revision,
    )


def template_from_proto(message: template_pb2.Template) -> PublishedTemplate:
    """Rebuild a template from what a registry sent. The manifest comes from the canonical bytes, so
    `verify()` on the result checks exactly what will be run. Raises FailedPrecondition if malformed."""
    try:
        manifest = manifest_from_canonical(message.canonical_manifest)
    except (ValueError, KeyError, TypeError) as exc:
        raise FailedPrecondition(f"template canonical_manifest is malformed: {exc!r}") from exc
    return PublishedTemplate(
        manifest=manifest,
        canonical_manifest=message.canonical_manifest,
        signature=signature_from_proto(message.signature),
        module_size=message.module_size,
        revision=message.revision,
        publish_time=to_unix(message.publish_time),
        deprecated=message.deprecated,
        deprecation_reason=message.deprecation_reason,
    )
