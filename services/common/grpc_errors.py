"""The one place where domain errors become gRPC statuses (with google.rpc details where useful)."""

from __future__ import annotations

import logging

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2

from services.common import errors
from services.common.logs import request_id_var

log = logging.getLogger(__name__)

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
    return status.SerializeToString()


async def abort_with(context: grpc.aio.ServicerContext, exc: errors.AgentFactoryError) -> None:
    """Abort the call with the status matching `exc`. Always raises."""
    code = status_code_for(exc)
    # Domain messages may quote what the client sent: bound them here, once, for every service.
    message = bounded(exc.message)
    # Keep what the handler already put in the trailers (abort replaces them).
    metadata = (*(context.trailing_metadata() or ()), ("grpc-status-details-bin", _details(exc, code, message)))
    await context.abort(code, message, trailing_metadata=metadata)


async def abort_internal(context: grpc.aio.ServicerContext, method: str) -> None:
    """Unexpected failure: log the traceback, tell the caller only that it happened and where to look."""
    rid = request_id_var.get()
    log.exception("unhandled error in %s", method, extra={"fields": {"method": method}})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {rid}); the server log has details")
