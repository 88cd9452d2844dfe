"""The one place where domain errors become gRPC statuses (with google.rpc details where useful)."""

from __future__ import annotations

import logging

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2

from services.common import errors
from services.common.logs import request_id_var

log = logging.getLogger(__name__)

_DOMAIN = "agentfactory.dev"


def status_code_for(exc: errors.AgentFactoryError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, exc.code_name, grpc.StatusCode.INTERNAL)


def _details(exc: errors.AgentFactoryError, code: grpc.StatusCode) -> bytes:
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=exc.message)
    if isinstance(exc, errors.InvalidArgument):
        bad = error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.message)]
        )
        status.details.add().Pack(bad)
    elif isinstance(exc, errors.PermissionDenied) and exc.rule:
        info = error_details_pb2.ErrorInfo(reason="POLICY_DENIED", domain=_DOMAIN, metadata={"rule": exc.rule})
        status.details.add().Pack(info)
    return status.SerializeToString()


async def abort_with(context: grpc.aio.ServicerContext, exc: errors.AgentFactoryError) -> None:
    """Abort the call with the status matching `exc`. Always raises."""
    code = status_code_for(exc)
    metadata = (("grpc-status-details-bin", _details(exc, code)),)
    await context.abort(code, exc.message, trailing_metadata=metadata)


async def abort_internal(context: grpc.aio.ServicerContext, method: str) -> None:
    """Unexpected failure: log the traceback, tell the caller only that it happened and where to look."""
    rid = request_id_var.get()
    log.exception("unhandled error in %s", method, extra={"fields": {"method": method}})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {rid}); the server log has details")
