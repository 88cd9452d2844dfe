"""The client-side status map (error_from_rpc, relayed_error) over every gRPC status code, the
server-side map (status_code_for) as its inverse for every domain error, and how a watch stream ends
(watched)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from services.common import errors
from services.common.grpc_errors import (
    MAX_UPSTREAM_DETAILS_BYTES,
    error_from_rpc,
    relayed_error,
    status_code_for,
    watched,
)

C = grpc.StatusCode
# What an upstream's status means to the service that called it: every code, written out.
EXPECTED: dict[grpc.StatusCode, type[errors.AgentFactoryError]] = {
    C.OK: errors.Unavailable,  # a failed call never ends OK; if one did, it gave no verdict
    C.CANCELLED: errors.Unavailable,
    C.UNKNOWN: errors.Unavailable,
    C.INVALID_ARGUMENT: errors.InvalidArgument,
    C.DEADLINE_EXCEEDED: errors.Unavailable,
    C.NOT_FOUND: errors.NotFound,
    C.ALREADY_EXISTS: errors.AlreadyExists,
    C.PERMISSION_DENIED: errors.FailedPrecondition,
    C.RESOURCE_EXHAUSTED: errors.Unavailable,
    C.FAILED_PRECONDITION: errors.FailedPrecondition,
    C.ABORTED: errors.Unavailable,
    C.OUT_OF_RANGE: errors.FailedPrecondition,
    C.UNIMPLEMENTED: errors.Unavailable,
    C.INTERNAL: errors.Unavailable,
    C.UNAVAILABLE: errors.Unavailable,
    C.DATA_LOSS: errors.DataLoss,
    C.UNAUTHENTICATED: errors.FailedPrecondition,
}


def rpc_error(code: grpc.StatusCode, details: str = "upstream says no") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


def test_every_status_code_is_in_the_table() -> None:
    assert set(EXPECTED) == set(grpc.StatusCode)


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_error_from_rpc_maps_each_code(code: grpc.StatusCode) -> None:
    err = error_from_rpc(rpc_error(code), "registry GetTemplate a@1")
    assert type(err) is EXPECTED[code]
    assert err.message.startswith("registry GetTemplate a@1")
    assert "upstream says no" in err.message


@pytest.mark.parametrize("code", [c for c, cls in EXPECTED.items() if cls is errors.Unavailable], ids=lambda c: c.name)
def test_a_failure_without_a_verdict_names_its_code_and_says_retry(code: grpc.StatusCode) -> None:
    err = error_from_rpc(rpc_error(code), "signer Sign")
    assert f"({code.name}: upstream says no)" in err.message
    assert err.message.endswith("; retry")


def test_invalid_argument_keeps_the_callers_field() -> None:
    err = error_from_rpc(rpc_error(C.INVALID_ARGUMENT), "registry GetTemplate", field="template_name")
    assert isinstance(err, errors.InvalidArgument)
    assert err.field == "template_name"


def test_a_refusal_of_this_service_says_so() -> None:
    err = error_from_rpc(rpc_error(C.PERMISSION_DENIED, "RBAC: access denied"), "signer Sign")
    assert err.message == "signer Sign was refused to this service (PERMISSION_DENIED: RBAC: access denied)"


def test_long_upstream_details_are_cut() -> None:
    err = error_from_rpc(rpc_error(C.NOT_FOUND, "x" * 100_000), "registry GetTemplate")
    assert len(err.message.encode()) <= len("registry GetTemplate: ") + MAX_UPSTREAM_DETAILS_BYTES
    assert err.message.endswith("...")


def test_missing_details_are_empty_not_none() -> None:
    err = error_from_rpc(grpc.aio.AioRpcError(C.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()), "x")
    assert "None" not in err.message


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_relayed_error_keeps_the_code(code: grpc.StatusCode) -> None:
    err = relayed_error(rpc_error(code, "the owner's answer"))
    assert err.message == "the owner's answer"
    # Relayed as it is: the server side maps it back to the very same code (INTERNAL where no domain
    # error has the code, as for any unknown error).
    has_class = code.name in {cls.code_name for cls in errors.AgentFactoryError.__subclasses__()}
    assert status_code_for(err) == (code if has_class else C.INTERNAL)


@pytest.mark.parametrize("cls", errors.AgentFactoryError.__subclasses__(), ids=lambda c: c.__name__)
def test_error_for_code_inverts_each_domain_error(cls: type[errors.AgentFactoryError]) -> None:
    assert type(errors.error_for_code(cls.code_name, "m")) is cls


class _Stream:
    """A server stream's call shaped as grpc.aio hands it out (not a UnaryStreamCall, hence the ignore
    below): replies, then a status (raised unless OK)."""

    def __init__(self, replies: list[str], end: grpc.StatusCode) -> None:
        self.replies, self.end, self.cancelled = replies, end, False

    async def __aiter__(self) -> AsyncIterator[str]:
        for reply in self.replies:
            yield reply
        if self.end != C.OK:
            raise rpc_error(self.end)

    def cancel(self) -> bool:
        self.cancelled = True
        return True


async def _read(call: _Stream, stop_after: int = 0) -> list[str]:
    got: list[str] = []
    async with contextlib.aclosing(watched(call, "signer WatchPublicKeys")) as replies:  # type: ignore[arg-type]
        async for reply in replies:
            got.append(reply)
            if len(got) == stop_after:
                break
    return got


def test_a_watch_ends_quietly_at_its_deadline_and_cancels_its_call() -> None:
    call = _Stream(["a", "b"], C.DEADLINE_EXCEEDED)
    assert asyncio.run(_read(call)) == ["a", "b"]
    assert call.cancelled


def test_a_watch_that_fails_otherwise_raises_the_domain_error() -> None:
    call = _Stream(["a"], C.UNAVAILABLE)
    with pytest.raises(errors.Unavailable, match=r"^signer WatchPublicKeys failed"):
        asyncio.run(_read(call))
    assert call.cancelled


def test_a_reader_that_stops_early_cancels_the_call_at_once() -> None:
    call = _Stream(["a", "b", "c"], C.OK)
    assert asyncio.run(_read(call, stop_after=1)) == ["a"]
    assert call.cancelled
