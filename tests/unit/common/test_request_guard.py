"""The request guard's checks on their own, without a server (tests/integration/common/test_request_guard.py
runs them through a real grpc.aio server with the interceptor)."""

from __future__ import annotations

from agentfactory.signer.v1 import signer_service_pb2 as sig_pb
from services.common import request_guard
from services.common.grpc_errors import bounded


def test_nested_fields_are_checked() -> None:
    req = sig_pb.VerifyRequest(signature=sig_pb.Signature(key_id="k" * 2000))
    rejected = request_guard.check(req)
    assert rejected is not None and rejected.field == "signature.key_id"
    assert request_guard.check(sig_pb.VerifyRequest(signature=sig_pb.Signature(key_id="k"))) is None


def test_guard_leaves_non_protobuf_deserializers_alone() -> None:
    assert request_guard.guard_deserializer(None) is None
    custom = bytes.decode
    assert request_guard.guard_deserializer(custom) is custom


def test_bounded_cuts_on_a_character_boundary() -> None:
    assert bounded("abc") == "abc"
    cut = bounded("\u00e9" * 2000, 101)
    assert cut.endswith("...") and len(cut.encode()) <= 101
