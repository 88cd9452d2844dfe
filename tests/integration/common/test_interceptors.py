"""The error-mapping interceptor, exercised through a real in-process grpc.aio server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from services.common import errors
from tests.integration.common.intercepted import intercepted_channel

RAISES = {
    b"invalid": errors.InvalidArgument("limits.fuel must be positive", field="limits.fuel"),
    b"denied": errors.PermissionDenied("tool 'shell' is denied", rule="denied_tools.shell"),
    b"missing": errors.NotFound("template a@1.0.0 not found"),
    b"exists": errors.AlreadyExists("a@1.0.0 exists with other content"),
    b"full": errors.ResourceExhausted("executor is full"),
}


async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request in RAISES:
        raise RAISES[request]
    if request == b"boom":
        raise RuntimeError("secret internal detail")
    return b"ok:" + request


async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"first"
    if request in RAISES:
        raise RAISES[request]
    if request == b"boom":
        raise KeyError("secret")
    yield b"second"


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    }
    async with intercepted_channel(handlers) as chan:
        yield chan


def details(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    raw = dict(err.trailing_metadata() or ())["grpc-status-details-bin"]
    return status_pb2.Status.FromString(raw)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"invalid", grpc.StatusCode.INVALID_ARGUMENT),
        (b"denied", grpc.StatusCode.PERMISSION_DENIED),
        (b"missing", grpc.StatusCode.NOT_FOUND),
        (b"exists", grpc.StatusCode.ALREADY_EXISTS),
        (b"full", grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
async def test_domain_errors_map_to_codes(channel: grpc.aio.Channel, payload: bytes, code: grpc.StatusCode) -> None:
    call = channel.unary_unary("/test.Svc/Unary")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(payload, timeout=5)
    assert err.value.code() == code
    assert err.value.details() == RAISES[payload].message


async def test_invalid_argument_carries_field_violation(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await channel.unary_unary("/test.Svc/Unary")(b"invalid", timeout=5)
    bad = error_details_pb2.BadRequest()
    assert details(err.value).details[0].Unpack(bad)
    assert bad.field_violations[0].field == "limits.fuel"


async def test_permission_denied_names_the_rule(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await channel.unary_unary("/test.Svc/Unary")(b"denied", timeout=5)
    info = error_details_pb2.ErrorInfo()
    assert details(err.value).details[0].Unpack(info)
    assert info.metadata["rule"] == "denied_tools.shell"


async def test_unexpected_errors_become_generic_internal(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await channel.unary_unary("/test.Svc/Unary")(b"boom", timeout=5)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (err.value.details() or "")
    # The server keeps serving.
    assert await channel.unary_unary("/test.Svc/Unary")(b"x", timeout=5) == b"ok:x"


async def test_streaming_errors_after_messages(channel: grpc.aio.Channel) -> None:
    call = channel.unary_stream("/test.Svc/Stream")(b"full", timeout=5)
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for item in call:
            received.append(item)
    assert received == [b"first"]
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    call = channel.unary_stream("/test.Svc/Stream")(b"boom", timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in call:
            pass
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert [m async for m in channel.unary_stream("/test.Svc/Stream")(b"x", timeout=5)] == [b"first", b"second"]
