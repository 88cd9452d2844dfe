"""The other colors' schedulers over gRPC: the adapter behind `ports.Peers`.

Every call goes through this scheduler's sidecar and carries `x-agentfactory-color: <color>`, which
the mesh routes to that color alone, and `x-agentfactory-forwarded-by: <this scheduler>`, so the
other one never forwards it again. The end user's identity travels in `x-agentfactory-principal`
(believed from a scheduler as from the gateway: services/common/audit.py), so the owner's audit
names them. When to ask, and what the answers mean together, is services/scheduler/federation.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from agentfactory.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from services.common import errors, mesh_headers
from services.common.channels import aio_channel
from services.common.grpc_errors import relayed_error
from services.common.logs import caller_var
from services.common.telemetry import Telemetry
from services.scheduler import messages
from services.scheduler.domain import Agent, CreateSpec, ListQuery, Page
from services.scheduler.ports import PeerUnreachable, WatchEvent

# The deadline of a unary question when the caller gave none (streams follow the caller's, or none).
DEFAULT_TIMEOUT_SECONDS = 5.0

T = TypeVar("T")


def _unanswered(exc: grpc.aio.AioRpcError) -> errors.AgentFactoryError:
    """A question's failure: NotFound when that color does not have it, PeerUnreachable otherwise."""
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(exc.details() or "")
    return PeerUnreachable(code.name if isinstance(code, grpc.StatusCode) else str(code), exc.details() or "")


class GrpcPeers:
    def __init__(self, address: str, colors: Sequence[str], self_id: str, telemetry: Telemetry) -> None:
        self._colors = tuple(colors)
        self._self_id = self_id
        self._channel = aio_channel(address, telemetry)
        self._stub = pb_grpc.SchedulerServiceStub(self._channel)

    @property
    def colors(self) -> Sequence[str]:
        return self._colors

    def _metadata(self, color: str) -> tuple[tuple[str, str], ...]:
        md = [(mesh_headers.COLOR, color), (mesh_headers.FORWARDED_BY, self._self_id)]
        caller = caller_var.get()
        if caller:
            md.append((mesh_headers.PRINCIPAL, caller))
        return tuple(md)

    async def _ask(self, rpc: Callable[..., Awaitable[T]], request: Message, color: str, timeout: float | None) -> T:
        """A unary question (`rpc`, a method of the stub) to one color: NotFound or PeerUnreachable if unanswered."""
        try:
            reply: T = await rpc(request, timeout=timeout or DEFAULT_TIMEOUT_SECONDS, metadata=self._metadata(color))
        except grpc.aio.AioRpcError as exc:
            raise _unanswered(exc) from None
        return reply

    async def get(self, color: str, agent_id: str, timeout: float | None) -> Agent:
        request = pb.GetAgentRequest(id=agent_id)
        reply: pb.GetAgentResponse = await self._ask(self._stub.GetAgent, request, color, timeout)
        return messages.agent_from_pb(reply.agent)

    async def cancel(self, color: str, agent_id: str, timeout: float | None) -> Agent:
        request = pb.CancelAgentRequest(id=agent_id)
        reply: pb.CancelAgentResponse = await self._ask(self._stub.CancelAgent, request, color, timeout)
        return messages.agent_from_pb(reply.agent)

    async def list_page(self, color: str, query: ListQuery, timeout: float | None) -> Page:
        request = messages.list_request(query)
        reply: pb.ListAgentsResponse = await self._ask(self._stub.ListAgents, request, color, timeout)
        return Page([messages.agent_from_pb(a) for a in reply.agents], reply.next_page_token)

    async def watch(self, color: str, agent_id: str, timeout: float | None) -> AsyncIterator[WatchEvent]:
        call: grpc.aio.UnaryStreamCall[pb.WatchAgentRequest, pb.WatchAgentResponse]
        call = self._stub.WatchAgent(pb.WatchAgentRequest(id=agent_id), timeout=timeout, metadata=self._metadata(color))
        async for event in self._relay(call, question=True):
            yield event

    async def create(self, color: str, spec: CreateSpec, timeout: float | None) -> Agent:
        try:
            reply: pb.CreateAgentResponse = await self._stub.CreateAgent(
                messages.create_request(spec),
                timeout=timeout or DEFAULT_TIMEOUT_SECONDS,
                metadata=self._metadata(color),
            )
        except grpc.aio.AioRpcError as exc:  # ALREADY_EXISTS for a different input, and the like
            raise relayed_error(exc) from None
        return messages.agent_from_pb(reply.agent)

    async def run(
        self, color: str, spec: CreateSpec, timeout: float | None, result_only: bool
    ) -> AsyncIterator[WatchEvent]:
        call: grpc.aio.UnaryStreamCall[pb.RunAgentRequest, pb.RunAgentResponse]
        call = self._stub.RunAgent(
            messages.run_request(spec, result_only), timeout=timeout, metadata=self._metadata(color)
        )
        async for event in self._relay(call, question=False):
            yield event

    @staticmethod
    async def _relay(
        call: grpc.aio.UnaryStreamCall[pb.WatchAgentRequest, pb.WatchAgentResponse]
        | grpc.aio.UnaryStreamCall[pb.RunAgentRequest, pb.RunAgentResponse],
        question: bool,
    ) -> AsyncIterator[WatchEvent]:
        """A stream's events; its error is the owner's own (relayed as it is), except that a question
        (a watch) that fails before its first message was not answered: NotFound or PeerUnreachable."""
        answered = not question
        try:
            # read(), not `async for`: grpc.aio refuses to mix the two on one call. read() gives a
            # response or grpc.aio.EOF (typed `object` by grpc's stubs, hence isinstance).
            while isinstance(response := await call.read(), (pb.WatchAgentResponse, pb.RunAgentResponse)):
                answered = True
                event = messages.event_from_pb(response)
                if event is not None:
                    yield event
        except grpc.aio.AioRpcError as exc:
            raise (relayed_error(exc) if answered else _unanswered(exc)) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()
