"""Requests are decodable and within bounds before a handler sees them; statuses stay small.

Through a real in-process grpc.aio server with the real interceptor and generated message types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import status_pb2

from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from services.common import errors, request_guard
from services.common.grpc_errors import MAX_MESSAGE_BYTES
from tests.integration.common.intercepted import intercepted_channel

METADATA_LIMIT = 16 * 1024
seen: list[object] = []


async def run_agent(request: sch_pb.RunAgentRequest, context: grpc.aio.ServicerContext) -> sch_pb.GetAgentRequest:
    seen.append(request)
    if request.template_name == "quote-me":
        # A domain message that (wrongly) repeats unbounded input: the transport still bounds it.
        raise errors.InvalidArgument("bad input " + request.request_id * 1, field="request_id" * 50)
    return sch_pb.GetAgentRequest(id="ok")


async def watch(request: reg_pb.WatchTemplatesRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    seen.append(request)
    yield reg_pb.WatchTemplatesRequest(after_revision=request.after_revision).SerializeToString()


async def publish(requests: AsyncIterator[reg_pb.PublishTemplateRequest], context: grpc.aio.ServicerContext) -> bytes:
    count = 0
    async for _ in requests:
        count += 1
    return sch_pb.GetAgentRequest(id=str(count)).SerializeToString()


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    handlers = {
        "Run": grpc.unary_unary_rpc_method_handler(
            run_agent, sch_pb.RunAgentRequest.FromString, sch_pb.GetAgentRequest.SerializeToString
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(watch, reg_pb.WatchTemplatesRequest.FromString),
        "Publish": grpc.stream_unary_rpc_method_handler(publish, reg_pb.PublishTemplateRequest.FromString),
    }
    async with intercepted_channel(handlers) as chan:
        yield chan


def _trailer_bytes(err: grpc.aio.AioRpcError) -> int:
    md = err.trailing_metadata() or ()
    return sum(len(k) + len(v) for k, v in md) + len(err.details() or "")


async def _unary(channel: grpc.aio.Channel, raw: bytes) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary("/test.Svc/Run")(raw, timeout=5)
    return info.value


@pytest.mark.parametrize(
    "raw",
    [
        b"\x0a\xff",  # truncated length-delimited field
        b"\x0a\x02\xff\xfe",  # invalid UTF-8 in template_name
        b"\x08",  # a tag with no value
        b"\x08" + b"\xff" * 11,  # a varint longer than ten bytes
        b"\x07",  # wire type 7 does not exist
    ],
)
async def test_undecodable_request_is_invalid_argument(channel: grpc.aio.Channel, raw: bytes) -> None:
    seen.clear()
    err = await _unary(channel, raw)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "RunAgentRequest" in (err.details() or "")
    assert not seen, "the handler saw an undecodable request"


async def test_long_string_is_refused_before_the_handler(channel: grpc.aio.Channel) -> None:
    seen.clear()
    err = await _unary(channel, sch_pb.RunAgentRequest(template_name="x" * 100_000).SerializeToString())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == f"template_name: longer than {request_guard.MAX_STRING} characters"
    assert not seen
    assert _trailer_bytes(err) < 2048


async def test_long_map_value_is_refused(channel: grpc.aio.Channel) -> None:
    req = sch_pb.RunAgentRequest(template_name="a", labels={"k": "v" * 5000})
    err = await _unary(channel, req.SerializeToString())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith("labels['k']")


async def test_a_good_request_passes_untouched(channel: grpc.aio.Channel) -> None:
    req = sch_pb.RunAgentRequest(template_name="a" * request_guard.MAX_STRING, labels={"k": "v"})
    reply = await channel.unary_unary("/test.Svc/Run")(req.SerializeToString(), timeout=5)
    assert sch_pb.GetAgentRequest.FromString(reply).id == "ok"


async def test_status_messages_are_bounded_whatever_a_domain_error_quotes(channel: grpc.aio.Channel) -> None:
    req = sch_pb.RunAgentRequest(template_name="quote-me", request_id="\u00e9" * 1000)
    err = await _unary(channel, req.SerializeToString())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len((err.details() or "").encode()) <= MAX_MESSAGE_BYTES
    raw = dict(err.trailing_metadata() or ())["grpc-status-details-bin"]
    assert len(status_pb2.Status.FromString(raw).message.encode()) <= MAX_MESSAGE_BYTES
    assert _trailer_bytes(err) < METADATA_LIMIT // 4


async def test_uint64_past_int64_is_refused(channel: grpc.aio.Channel) -> None:
    seen.clear()
    raw = reg_pb.WatchTemplatesRequest(after_revision=2**63).SerializeToString()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in channel.unary_stream("/test.Svc/Watch")(raw, timeout=5):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "after_revision: must be at most 2^63-1"
    assert not seen
    ok = reg_pb.WatchTemplatesRequest(after_revision=2**63 - 1).SerializeToString()
    assert [m async for m in channel.unary_stream("/test.Svc/Watch")(ok, timeout=5)]


async def test_a_bad_message_in_a_client_stream_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    good = reg_pb.PublishTemplateRequest(chunk=b"abc").SerializeToString()

    async def requests() -> AsyncIterator[bytes]:
        yield good
        yield b"\x12\xff"  # chunk: truncated

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.stream_unary("/test.Svc/Publish")(requests(), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reply = await channel.stream_unary("/test.Svc/Publish")(iter([good, good]), timeout=5)
    assert sch_pb.GetAgentRequest.FromString(reply).id == "2"
