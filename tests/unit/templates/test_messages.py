from __future__ import annotations

import hashlib

import pytest

from agentfactory.signer.v1 import signer_service_pb2
from services.common.errors import FailedPrecondition
from services.templates.manifest import parse_draft, resolve
from services.templates.messages import (
    manifest_from_proto,
    manifest_to_proto,
    signature_from_proto,
    template_from_proto,
    template_to_proto,
)
from services.templates.policy import Policy
from services.templates.published import PublishedTemplate
from tests.unit.registry.conftest import WASM, KeySigner, manifest


async def published() -> tuple[PublishedTemplate, KeySigner]:
    signer = KeySigner()
    m = resolve(
        parse_draft(
            manifest(
                tools=["kv"], env={"A": "1"}, labels={"t": "x"}, args=["--v"], retryable=True,
                input_schema={"type": "object", "maxProperties": 3, "ratio": 0.5, "list": [1, 2.5]},
            )
        ),
        Policy.load().default_limits,
        lambda n, v: None,
        hashlib.sha256(WASM).hexdigest(),
    )  # fmt: skip
    canonical = m.canonical_bytes()
    template = PublishedTemplate(m, canonical, await signer.sign(canonical), 8, 4, 1700000000.25, True, "old")
    return template, signer


async def test_template_round_trips_and_verifies() -> None:
    template, signer = await published()
    message = template_to_proto(template)
    assert message.signature.algorithm == signer_service_pb2.SIGNATURE_ALGORITHM_RSA_PKCS1V15_SHA256
    back = template_from_proto(message)
    assert back == template
    back.verify(signer.keyring())
    # The manifest message carries numbers as doubles; whole ones come back as ints.
    assert manifest_from_proto(manifest_to_proto(template.manifest)) == template.manifest


async def test_verifier_trusts_the_canonical_bytes_not_the_message() -> None:
    template, signer = await published()
    message = template_to_proto(template)
    message.manifest.tools.append("http_get")  # ignored: the manifest is rebuilt from canonical bytes
    assert template_from_proto(message).manifest.tools == ("kv",)
    message.canonical_manifest = message.canonical_manifest.replace(b'"kv"', b'"log"')
    with pytest.raises(FailedPrecondition, match="altered"):
        template_from_proto(message).verify(signer.keyring())
    message.canonical_manifest = b"{not json"
    with pytest.raises(FailedPrecondition, match="malformed"):
        template_from_proto(message)


def test_unknown_signature_algorithm_is_refused() -> None:
    with pytest.raises(FailedPrecondition, match="not supported"):
        signature_from_proto(signer_service_pb2.Signature(key_id="k", key_version=1))
