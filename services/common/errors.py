"""Domain errors. Domain code raises these; the transport maps them to gRPC status codes in one place.

This module must not import grpc: domain modules import it.
"""

from __future__ import annotations


class AgentFactoryError(Exception):
    """Base of every error a caller should see. `message` is safe to show to the caller."""

    code_name = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(AgentFactoryError):
    """The request is malformed; `field` names the offending field (dotted path) when known."""

    code_name = "INVALID_ARGUMENT"

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class NotFound(AgentFactoryError):
    code_name = "NOT_FOUND"


class AlreadyExists(AgentFactoryError):
    code_name = "ALREADY_EXISTS"


class PermissionDenied(AgentFactoryError):
    """Denied by policy; `rule` names the policy rule that denied it."""

    code_name = "PERMISSION_DENIED"

    def __init__(self, message: str, rule: str = "") -> None:
        super().__init__(message)
        self.rule = rule


class FailedPrecondition(AgentFactoryError):
    code_name = "FAILED_PRECONDITION"


class ResourceExhausted(AgentFactoryError):
    code_name = "RESOURCE_EXHAUSTED"


class Unavailable(AgentFactoryError):
    code_name = "UNAVAILABLE"


class DeadlineExceeded(AgentFactoryError):
    code_name = "DEADLINE_EXCEEDED"


class Cancelled(AgentFactoryError):
    code_name = "CANCELLED"


class DataLoss(AgentFactoryError):
    """Stored data is unreadable or does not match its recorded digest. Restore from a backup."""

    code_name = "DATA_LOSS"


_BY_CODE: dict[str, type[AgentFactoryError]] = {
    cls.code_name: cls
    for cls in (
        InvalidArgument, NotFound, AlreadyExists, PermissionDenied, FailedPrecondition, ResourceExhausted,
        Unavailable, DeadlineExceeded, Cancelled, DataLoss,
    )
}  # fmt: skip


def error_for_code(code_name: str, message: str) -> AgentFactoryError:
    """The domain error whose status is `code_name` (the base, INTERNAL, for a code no domain error has):
    a status passed on as it is, such as a run's journaled end or a forwarded call's own answer."""
    return _BY_CODE.get(code_name, AgentFactoryError)(message)


def quote(value: object, limit: int = 64) -> str:
    """``repr(value)`` cut to ``limit`` characters: how a message names what a client sent, so that an
    error never repeats unbounded input (the transport bounds whole messages too: grpc_errors)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
