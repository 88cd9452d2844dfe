"""A `test.Svc` gRPC server on loopback behind the services' ServiceInterceptor, for the tests of what the
interceptor does to handlers' errors and to requests before any handler runs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from services.common.interceptors import ServiceInterceptor


@contextlib.asynccontextmanager
async def intercepted_channel(handlers: dict[str, grpc.RpcMethodHandler]) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to a server of `handlers` (method name -> handler) under test.Svc, stopped after."""
    server = grpc.aio.server(interceptors=[ServiceInterceptor("test")])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Svc", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
        yield chan
    await server.stop(0)
