"""The issue's hostile requests, through the gateway and the whole mesh (gateway -> sidecars -> the
services): each is INVALID_ARGUMENT with a short message, never UNKNOWN/INTERNAL, never a reply too
large for the metadata limit (which a client saw as RESOURCE_EXHAUSTED or UNAVAILABLE "protocol error")."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from tests.harness_mesh import E2EMesh

REG = "/agentfactory.registry.v1.RegistryService"
SCH = "/agentfactory.scheduler.v1.SchedulerService"
CASES = [
    (f"{REG}/GetTemplate", reg_pb.GetTemplateRequest(name="n" * 5000).SerializeToString(), False),
    (f"{SCH}/GetAgent", sch_pb.GetAgentRequest(id="a" * 100_000).SerializeToString(), False),
    (f"{REG}/WatchTemplates", reg_pb.WatchTemplatesRequest(after_revision=2**63).SerializeToString(), True),
    (f"{SCH}/RunAgent", sch_pb.RunAgentRequest(template_name="echo-upper\n").SerializeToString(), True),
    (f"{SCH}/RunAgent", b"\x0a\x02\xff\xfe", True),  # invalid UTF-8 in template_name
    (f"{REG}/GetTemplate", b"\x0a\xff", False),  # truncated
    (f"{SCH}/CreateAgent", b"\x08" + b"\xff" * 10 + b"\x01", False),  # an 11-byte varint
]


@pytest.fixture
def admin_channel(e2e_mesh: E2EMesh) -> Iterator[grpc.Channel]:
    tls = e2e_mesh.tls("admin")
    assert tls.cert is not None and tls.key is not None
    creds = grpc.ssl_channel_credentials(tls.ca.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes())
    # Large client limits, so an oversized reply is measured here rather than refused by the client.
    options = [("grpc.max_metadata_size", 1 << 20), ("grpc.absolute_max_metadata_size", 1 << 20)]
    with grpc.secure_channel(e2e_mesh.gateway, creds, options=options) as channel:
        yield channel


@pytest.mark.parametrize(
    ("path", "body", "streaming"), CASES, ids=[f"{p.rsplit('/', 1)[1]}-{i}" for i, (p, _, _) in enumerate(CASES)]
)
def test_hostile_request_through_the_mesh(admin_channel: grpc.Channel, path: str, body: bytes, streaming: bool) -> None:
    with pytest.raises(grpc.RpcError) as info:
        if streaming:
            for _ in admin_channel.unary_stream(path)(body, timeout=10):
                pass
        else:
            admin_channel.unary_unary(path)(body, timeout=10)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), (err.details() or "")[:200])  # type: ignore[attr-defined]
    trailers = err.trailing_metadata() or ()  # type: ignore[attr-defined]
    assert len(err.details() or "") <= 1024  # type: ignore[attr-defined]
    assert sum(len(k) + len(v) for k, v in trailers) < 8 * 1024
