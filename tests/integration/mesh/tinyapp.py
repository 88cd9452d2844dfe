"""A tiny but real grpc.aio server that stands in for a service behind its sidecar.

It serves grpc.health.v1, server reflection, and every method of one service contract (the
method table comes from protos/ via mesh.methods), answering with empty messages: an empty
protobuf encoding is a valid default message of any type, so no generated stubs are needed.
It records every call that reaches it, so tests can prove a denied call never did.

Test knobs, sent as request metadata (only ever used by the tests):
    x-test-sleep-ms   sleep before answering (timeouts)
    x-test-status     answer with this gRPC status code instead of OK, before any message
    x-test-gap-ms     streams: send one message, wait this long, send another (idle timeouts)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from mesh.methods import Method
from services.common.server import SERVER_OPTIONS


@dataclass(frozen=True)
class Call:
    path: str
    metadata: dict[str, str]


@dataclass
class TinyApp:
    name: str
    port: int
    methods: Sequence[Method]
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    # -- bookkeeping ---------------------------------------------------------------------------

    def _record(self, context: grpc.aio.ServicerContext, path: str) -> dict[str, str]:
        md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        with self._lock:
            self.calls.append(Call(path, md))
        return md

    def seen(self, path: str) -> int:
        with self._lock:
            return sum(1 for c in self.calls if c.path == path)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    # -- handlers ------------------------------------------------------------------------------

    async def _prelude(self, context: grpc.aio.ServicerContext, path: str) -> dict[str, str]:
        md = self._record(context, path)
        # In trailers, not headers: once headers are out Envoy can no longer answer with its own
        # status (deadline, fault) and would have to reset the stream instead.
        context.set_trailing_metadata((("x-served-by", self.name),))
        if "x-test-sleep-ms" in md:
            await asyncio.sleep(int(md["x-test-sleep-ms"]) / 1000)
        if "x-test-status" in md:
            await context.abort(grpc.StatusCode(_code(int(md["x-test-status"]))), f"{self.name}: asked to fail")
        return md

    def _handler(self, m: Method) -> grpc.RpcMethodHandler:
        path = m.path

        async def unary_unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await self._prelude(context, path)
            return b""

        async def unary_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            md = await self._prelude(context, path)
            yield b""
            if "x-test-gap-ms" in md:
                await asyncio.sleep(int(md["x-test-gap-ms"]) / 1000)
                yield b""

        async def stream_unary(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
            await self._prelude(context, path)
            async for _ in requests:
                pass
            return b""

        if m.client_streaming and not m.server_streaming:
            return grpc.stream_unary_rpc_method_handler(stream_unary)
        if m.server_streaming and not m.client_streaming:
            return grpc.unary_stream_rpc_method_handler(unary_stream)
        if not m.streaming:
            return grpc.unary_unary_rpc_method_handler(unary_unary)
        raise NotImplementedError(f"no bidi methods in the contracts: {path}")

    # -- lifecycle -----------------------------------------------------------------------------

    async def _serve(self) -> None:
        # The services' own options: above all the PING policy, since every sidecar PINGs its app.
        server = grpc.aio.server(options=SERVER_OPTIONS)
        by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for m in self.methods:
            service = m.path.split("/")[1]
            by_service.setdefault(service, {})[m.name] = self._handler(m)
        for service, handlers in by_service.items():
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        health = _RecordingHealth(self)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            [*by_service, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
        )
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server
        self._stopping = asyncio.Event()
        self._started.set()
        # Stop from inside the loop: stopping from another thread races the loop's own exit.
        await self._stopping.wait()
        await server.stop(0)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._started.set()
        finally:
            self._loop.close()

    def start(self) -> TinyApp:
        self._thread = threading.Thread(target=self._run, name=f"tinyapp-{self.name}", daemon=True)
        self._thread.start()
        self._started.wait()  # set on start and on failure alike; no time bound (pytest's timeout ends a hang)
        if self._error:
            raise RuntimeError(f"tiny app {self.name} did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop and self._server and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread:
            self._thread.join(10)


class _RecordingHealth(HealthServicer):
    """Health that also counts checks, so tests can tell Envoy's active checks arrived."""

    def __init__(self, app: TinyApp) -> None:
        super().__init__()
        self._app = app

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._app._record(context, "/grpc.health.v1.Health/Check")
        return await super().Check(request, context)


def _code(value: int) -> tuple[int, str]:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code.value
    raise ValueError(value)


def call(
    channel: grpc.Channel,
    m: Method,
    *,
    timeout: float = 5.0,
    metadata: Sequence[tuple[str, str]] = (),
) -> tuple[grpc.StatusCode, dict[str, str]]:
    """Call any contract method with an empty message; return (status, trailing metadata)."""
    md = tuple(metadata)
    try:
        if m.client_streaming and not m.server_streaming:
            _, c = channel.stream_unary(m.path).with_call(iter([b""]), timeout=timeout, metadata=md)
            return grpc.StatusCode.OK, dict(c.trailing_metadata() or ())
        if m.server_streaming:
            stream = channel.unary_stream(m.path)(b"", timeout=timeout, metadata=md)
            for _ in stream:
                pass
            return grpc.StatusCode.OK, dict(stream.trailing_metadata() or ())
        _, c = channel.unary_unary(m.path).with_call(b"", timeout=timeout, metadata=md)
        return grpc.StatusCode.OK, dict(c.trailing_metadata() or ())
    except grpc.RpcError as err:
        return err.code(), dict(err.trailing_metadata() or ())  # type: ignore[attr-defined]
