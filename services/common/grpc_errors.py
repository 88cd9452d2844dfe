"""The one place where domain errors and gRPC statuses meet, both ways: a server turns its domain errors
into statuses (with google.rpc details where useful, `abort_with`), and every client adapter turns an
upstream's status back into a domain error (`error_from_rpc`), so that one status means one thing in
every service."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2

from services.common import errors
from services.common.logs import request_id_var

log = logging.getLogger(__name__)

ReplyT = TypeVar("ReplyT")

_DOMAIN = "agentfactory.dev"
# What a status may carry back, so that grpc-message and grpc-status-details-bin together stay far
# below the 16 KiB metadata limit whatever a message quotes: UTF-8 bytes, before percent-encoding
# (at most 3x) and base64 (4/3).
MAX_MESSAGE_BYTES = 1024
MAX_FIELD_BYTES = 256


def bounded(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (on a character boundary), marked when cut."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


def status_code_for(exc: errors.AgentFactoryError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, exc.code_name, grpc.StatusCode.INTERNAL)


def _details(exc: errors.AgentFactoryError, code: grpc.StatusCode, message: str) -> bytes:
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    if isinstance(exc, errors.InvalidArgument):
        field = bounded(exc.field, MAX_FIELD_BYTES)
        bad = error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=message)]
        )
        status.details.add().Pack(bad)
    elif isinstance(exc, errors.PermissionDenied) and exc.rule:
        info = error_details_pb2.ErrorInfo(
            reason="POLICY_DENIED", domain=_DOMAIN, metadata={"rule": bounded(exc.rule, MAX_FIELD_BYTES)}
        )
        status.details.add().Pack(info)
    serialized: bytes = status.SerializeToString()  # google.rpc has no stubs: typed here
    return serialized


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], exc: errors.AgentFactoryError) -> None:
    """Abort the call with the status matching `exc`. Always raises."""
    code = status_code_for(exc)
    # Domain messages may quote what the client sent: bound them here, once, for every service.
    message = bounded(exc.message)
    # Keep what the handler already put in the trailers (abort replaces them).
    metadata = (*(context.trailing_metadata() or ()), ("grpc-status-details-bin", _details(exc, code, message)))
    await context.abort(code, message, trailing_metadata=metadata)


async def abort_internal(context: grpc.aio.ServicerContext[Any, Any], method: str) -> None:
    """Unexpected failure: log the traceback, tell the caller only that it happened and where to look."""
    rid = request_id_var.get()
    log.exception("unhandled error in %s", method, extra={"fields": {"method": method}})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {rid}); the server log has details")


# Client side. An upstream's status is either its verdict on what this service asked (kept: the same
# error class the upstream raised, so the caller learns the same thing) or a failure to get a verdict at
# all (UNAVAILABLE: retrying, possibly elsewhere, may help). A refusal of this service itself (the mesh's
# RBAC, a missing identity) is no verdict on the caller's request and no transient failure either: an
# operator fixes it, so it is FAILED_PRECONDITION.
_VERDICTS: dict[grpc.StatusCode, type[errors.AgentFactoryError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.OUT_OF_RANGE: errors.FailedPrecondition,
    # The upstream's stored copy is damaged: retrying elsewhere cannot help, so it is not UNAVAILABLE
    # (which callers read as "try another replica").
    grpc.StatusCode.DATA_LOSS: errors.DataLoss,
}
_REFUSALS = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED})
# An upstream's details are bounded by the upstream; bound them again so that a quoted reply stays short.
MAX_UPSTREAM_DETAILS_BYTES = 512


def error_from_rpc(exc: grpc.aio.AioRpcError, what: str, *, field: str = "") -> errors.AgentFactoryError:
    """The domain error for an upstream call that ended with `exc`; `what` names the call (upstream,
    method, subject) and starts the message; `field` is the caller's field an INVALID_ARGUMENT is about."""
    code = exc.code()
    details = bounded(exc.details() or "", MAX_UPSTREAM_DETAILS_BYTES)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return errors.InvalidArgument(f"{what}: {details}", field=field)
    verdict = _VERDICTS.get(code)
    if verdict is not None:
        return verdict(f"{what}: {details}")
    name = code.name if isinstance(code, grpc.StatusCode) else str(code)
    if code in _REFUSALS:
        return errors.FailedPrecondition(f"{what} was refused to this service ({name}: {details})")
    return errors.Unavailable(f"{what} failed ({name}: {details}); retry")


async def watched(call: grpc.aio.UnaryStreamCall[Any, ReplyT], what: str) -> AsyncGenerator[ReplyT, None]:
    """The replies of a watch stream opened with a deadline, which is its planned end (the caller re-opens
    it from where it got to): that end is a plain return, any other status the domain error that
    `error_from_rpc` gives. The call is cancelled however the caller stops reading; read it inside
    `contextlib.aclosing` so that this happens at once, not when the generator is collected."""
    try:
        async for reply in call:
            yield reply
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return
        raise error_from_rpc(exc, what) from exc
    finally:
        call.cancel()


def relayed_error(exc: grpc.aio.AioRpcError) -> errors.AgentFactoryError:
    """A forwarded call's status, passed on as it is: the upstream answered the very RPC the caller made
    (not a question of this service's own), so its verdict and its failures alike are the caller's answer."""
    code = exc.code()
    return errors.error_for_code(
        code.name if isinstance(code, grpc.StatusCode) else str(code), bounded(exc.details() or "")
    )
