"""Server interceptor: request ids, error mapping and RPC metrics for every handler kind.

Servicers raise domain errors (services.common.errors); this turns them into statuses, and turns
anything unexpected into INTERNAL with a generic message while the traceback goes to the log.
Server-streaming handlers must be async generators.

Requests reach a handler only once decodable and within bounds (services.common.request_guard):
a method's deserializer is swapped for a guarded one, and a rejected request is INVALID_ARGUMENT.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from services.common import audit, errors
from services.common.grpc_errors import abort_internal, abort_with
from services.common.logs import caller_var, request_id_var
from services.common.metrics import POLICY_DENIALS, RPC_LATENCY, RPC_TOTAL
from services.common.request_guard import Rejected, guard_deserializer


def _code_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    code = context.code()
    if code is None:
        return "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service_name: str) -> None:
        self.service_name = service_name

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        short = method.rsplit("/", 1)[-1]
        if method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        # Values are str under text keys and bytes under "-bin" keys; only text keys are read here.
        incoming: dict[str, Any] = dict(handler_call_details.invocation_metadata or ())
        service = self.service_name
        deserializer = guard_deserializer(handler.request_deserializer)

        caller = audit.caller_from_metadata(incoming)

        def begin() -> tuple[float, Any]:
            rid = incoming.get("x-request-id") or uuid.uuid4().hex[:16]
            return time.perf_counter(), (request_id_var.set(rid), caller_var.set(caller))

        def finish(started: float, tokens: Any, code: str) -> None:
            RPC_LATENCY.labels(service, short, code).observe(time.perf_counter() - started)
            RPC_TOTAL.labels(service, short, code).inc()
            request_id_var.reset(tokens[0])
            caller_var.reset(tokens[1])

        def denied(exc: errors.AgentFactoryError) -> None:
            # Every policy denial is a security event, whichever service raised it.
            if isinstance(exc, errors.PermissionDenied):
                rule = exc.rule or "unnamed"
                POLICY_DENIALS.labels(service, rule).inc()
                audit.record("policy_denial", target=method, outcome="denied", rule=rule, reason=exc.message)

        async def settle(exc: Exception, context: grpc.aio.ServicerContext[Any, Any], outcome: list[str]) -> None:
            """Turn what a handler raised into the call's status; always raises."""
            if isinstance(exc, errors.AgentFactoryError):
                outcome[0] = exc.code_name
                denied(exc)
                await abort_with(context, exc)
            if isinstance(exc, grpc.aio.AbortError):
                outcome[0] = _code_of(context)
                raise exc
            outcome[0] = "INTERNAL"
            await abort_internal(context, method)

        if handler.unary_unary or handler.stream_unary:
            # grpc's stubs type a handler's behaviour as a sync function taking grpc.ServicerContext; an aio
            # server's are coroutine functions taking grpc.aio.ServicerContext.
            inner: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]] = (
                handler.unary_unary or handler.stream_unary  # type: ignore[assignment]
            )

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                started, token = begin()
                outcome = ["OK"]
                try:
                    result = await inner(_checked(request), context)
                    outcome[0] = _code_of(context)
                    return result
                except Exception as exc:
                    await settle(exc, context, outcome)
                finally:
                    finish(started, token, outcome[0])

            factory = (
                grpc.unary_unary_rpc_method_handler if handler.unary_unary else grpc.stream_unary_rpc_method_handler
            )
            return factory(unary, deserializer, handler.response_serializer)

        # Likewise an aio server's streaming behaviours are async generator functions, not sync iterators.
        inner_stream: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]] = (
            handler.unary_stream or handler.stream_stream  # type: ignore[assignment]
        )

        async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started, token = begin()
            outcome = ["OK"]
            try:
                async for item in inner_stream(_checked(request), context):
                    yield item
                outcome[0] = _code_of(context)
            except Exception as exc:
                await settle(exc, context, outcome)
            finally:
                finish(started, token, outcome[0])

        factory = (
            grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
        )
        return factory(streaming, deserializer, handler.response_serializer)


def _checked(request: Any) -> Any:
    """The request itself, or for a client stream an iterator that checks each message as it is read.
    A rejected message raises InvalidArgument where the handler reads it (its own error handling sees a
    domain error, and the interceptor maps it)."""
    if type(request) is Rejected:
        raise errors.InvalidArgument(request.message, field=request.field)
    if isinstance(request, Message):
        return request
    if hasattr(request, "__aiter__"):
        return _checked_stream(request)
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for item in requests:
        if type(item) is Rejected:
            raise errors.InvalidArgument(item.message, field=item.field)
        yield item
