"""The other colors' schedulers, asked about agents this one does not own.

Each scheduler owns the agents it created (its own journal). While traffic is split blue/green, a
GetAgent, WatchAgent or CancelAgent can reach the color that did not create the agent: that scheduler
does not know it, so it asks its peers, one color at a time, through its sidecar (the mesh routes a
call carrying `x-agentfactory-color: <color>` to that color alone). Likewise a CreateAgent or
RunAgent whose request_id another color already used is forwarded whole to that color, so a client
retry that lands on the other color does not create a second agent. A forwarded call carries
`x-agentfactory-forwarded-by` and is never forwarded again, so two schedulers cannot bounce a call
between them. The end user's identity travels in `x-agentfactory-principal` (believed from a
scheduler as from the gateway: services/common/audit.py), so the owner's audit names them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from agentfactory.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from services.common import mesh_headers
from services.common.channels import aio_channel
from services.common.errors import NotFound, Unavailable
from services.common.grpc_errors import relayed_error
from services.common.logs import caller_var, log_event
from services.common.telemetry import Telemetry
from services.common.timestamps import to_unix
from services.scheduler import metrics
from services.scheduler.domain import PageCursor

DEFAULT_TIMEOUT_SECONDS = 5.0

T = TypeVar("T")
log = logging.getLogger(__name__)


def is_forwarded(metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    return any(key == mesh_headers.FORWARDED_BY for key, _ in metadata or ())


class Peers:
    def __init__(self, address: str, colors: Sequence[str], self_id: str, telemetry: Telemetry) -> None:
        self.colors = tuple(colors)
        self._self_id = self_id
        self._channel = aio_channel(address, telemetry)
        self._stub = pb_grpc.SchedulerServiceStub(self._channel)

    def _metadata(self, color: str) -> tuple[tuple[str, str], ...]:
        md = [(mesh_headers.COLOR, color), (mesh_headers.FORWARDED_BY, self._self_id)]
        caller = caller_var.get()
        if caller:
            md.append((mesh_headers.PRINCIPAL, caller))
        return tuple(md)

    async def _first(self, method: str, agent_id: str, ask: Callable[[str], Awaitable[T]]) -> T:
        """The first peer's answer that is not NOT_FOUND. NotFound when every peer says so;
        Unavailable when some peer could not be asked (it may own the agent)."""
        unreachable = []
        for color in self.colors:
            try:
                answer = await ask(color)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    metrics.PEER_CALLS.labels(method, "not_found").inc()
                    continue
                metrics.PEER_CALLS.labels(method, "unreachable").inc()
                unreachable.append(f"{color}: {exc.code().name}: {exc.details() or ''}".rstrip(": "))
                continue
            metrics.PEER_CALLS.labels(method, "ok").inc()
            return answer
        if unreachable:
            raise Unavailable(
                f"agent {agent_id!r} is not on this scheduler and the other color could not be asked "
                f"({'; '.join(unreachable)}); retry"
            )
        raise NotFound(f"agent {agent_id!r} does not exist")

    async def _first_unary(
        self, method: str, agent_id: str, rpc: Callable[..., Awaitable[Any]], request: Message, timeout: float | None
    ) -> Any:
        """`rpc` (a unary method of the peers' stub) answered by the first color that knows the agent."""
        budget = timeout or DEFAULT_TIMEOUT_SECONDS

        async def ask(color: str) -> Any:
            return await rpc(request, timeout=budget, metadata=self._metadata(color))

        return await self._first(method, agent_id, ask)

    async def get(self, request: pb.GetAgentRequest, timeout: float | None) -> pb.GetAgentResponse:
        reply: pb.GetAgentResponse = await self._first_unary(
            "GetAgent", request.id, self._stub.GetAgent, request, timeout
        )
        return reply

    async def cancel(self, request: pb.CancelAgentRequest, timeout: float | None) -> pb.CancelAgentResponse:
        reply: pb.CancelAgentResponse = await self._first_unary(
            "CancelAgent", request.id, self._stub.CancelAgent, request, timeout
        )
        return reply

    async def watch(self, request: pb.WatchAgentRequest, timeout: float | None) -> AsyncIterator[pb.WatchAgentResponse]:
        """The owner's WatchAgent stream, relayed. The owner is found by its first message (a watch
        always starts with the agent as it is now)."""

        async def ask(
            color: str,
        ) -> tuple[grpc.aio.UnaryStreamCall[pb.WatchAgentRequest, pb.WatchAgentResponse], pb.WatchAgentResponse]:
            call: grpc.aio.UnaryStreamCall[pb.WatchAgentRequest, pb.WatchAgentResponse]
            call = self._stub.WatchAgent(request, timeout=timeout, metadata=self._metadata(color))
            # read() gives a response or grpc.aio.EOF (typed `object` by grpc's stubs, hence isinstance)
            first = await call.read()
            if not isinstance(first, pb.WatchAgentResponse):  # a watch always starts with the agent: a broken peer
                raise Unavailable(f"scheduler {color} ended a watch of {request.id!r} without a message")
            return call, first

        call, first = await self._first("WatchAgent", request.id, ask)
        try:
            yield first
            # read(), not `async for`: grpc.aio refuses to mix the two on one call.
            while isinstance(response := await call.read(), pb.WatchAgentResponse):  # until grpc.aio.EOF
                yield response
        except grpc.aio.AioRpcError as exc:  # the owner ended the watch with an error: pass it on
            raise relayed_error(exc) from None
        finally:
            call.cancel()

    async def _list_each(
        self, request: pb.ListAgentsRequest, timeout: float | None
    ) -> AsyncIterator[tuple[str, pb.ListAgentsResponse]]:
        """(color, page) of the same ListAgents at each other color, in order. A color that cannot be
        asked is left out (counted as unreachable): lookups and listings do not depend on every
        color being up (creating after a skipped lookup risks a duplicate; refusing would not)."""
        for color in self.colors:
            try:
                page = await self._stub.ListAgents(
                    request, timeout=timeout or DEFAULT_TIMEOUT_SECONDS, metadata=self._metadata(color)
                )
            except grpc.aio.AioRpcError as exc:
                metrics.PEER_CALLS.labels("ListAgents", "unreachable").inc()
                log_event(log, "peer left out of ListAgents", logging.WARNING, color=color, code=exc.code().name,
                          request_id=request.request_id)  # fmt: skip
                continue
            metrics.PEER_CALLS.labels("ListAgents", "ok" if page.agents else "not_found").inc()
            yield color, page

    async def owner_of_request(self, request_id: str, timeout: float | None) -> str | None:
        """The color whose scheduler created the agent of `request_id`, if one did."""
        async for color, page in self._list_each(pb.ListAgentsRequest(request_id=request_id, page_size=1), timeout):
            if page.agents:
                return color
        return None

    async def list_request(self, request: pb.ListAgentsRequest, timeout: float | None) -> pb.ListAgentsResponse:
        """ListAgents by request_id at the color that has it (an empty page when none does)."""
        async for _, page in self._list_each(request, timeout):
            if page.agents:
                return page
        return pb.ListAgentsResponse()

    async def list_pages(self, request: pb.ListAgentsRequest, timeout: float | None) -> list[pb.ListAgentsResponse]:
        """The same page of the same listing from every other color that answers."""
        return [page async for _, page in self._list_each(request, timeout)]

    async def create(self, request: pb.CreateAgentRequest, color: str, timeout: float | None) -> pb.CreateAgentResponse:
        metrics.PEER_CALLS.labels("CreateAgent", "ok").inc()  # forwarded: the owner answers, error or not
        try:
            answer: pb.CreateAgentResponse = await self._stub.CreateAgent(
                request, timeout=timeout or DEFAULT_TIMEOUT_SECONDS, metadata=self._metadata(color)
            )
            return answer
        except grpc.aio.AioRpcError as exc:  # ALREADY_EXISTS for a different input, and the like
            raise relayed_error(exc) from None

    async def run(
        self, request: pb.RunAgentRequest, color: str, timeout: float | None
    ) -> AsyncIterator[pb.RunAgentResponse]:
        """The owner's RunAgent stream for a repeated request_id, relayed with its final status."""
        metrics.PEER_CALLS.labels("RunAgent", "ok").inc()
        call = self._stub.RunAgent(request, timeout=timeout, metadata=self._metadata(color))
        try:
            while (response := await call.read()) is not grpc.aio.EOF:
                yield response
        except grpc.aio.AioRpcError as exc:
            raise relayed_error(exc) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()


def merge_pages(
    pages: Sequence[pb.ListAgentsResponse], size: int, token_after: Callable[[pb.Agent], str]
) -> pb.ListAgentsResponse:
    """One page, newest first, out of the same page of each color's listing. Every color continues
    from the same cursor (creation time and id of the page's last agent), so nothing is skipped or
    repeated however the colors' agents interleave."""
    merged = sorted((a for page in pages for a in page.agents), key=_newest_first, reverse=True)
    taken = merged[:size]
    more = len(merged) > size or any(page.next_page_token for page in pages)
    return pb.ListAgentsResponse(agents=taken, next_page_token=token_after(taken[-1]) if more and taken else "")


def _newest_first(agent: pb.Agent) -> PageCursor:
    return PageCursor.of(to_unix(agent.create_time), agent.id)
