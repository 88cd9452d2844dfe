"""SchedulerService over gRPC: protobuf in, domain call, protobuf out. Errors are domain exceptions,
mapped to statuses by the shared interceptor. Which color answers is federation.py's business; the
servicer only hands it the call's origin (read from the metadata if it is asked)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from agentfactory.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from services.common import mesh_headers
from services.common.errors import InvalidArgument
from services.scheduler.federation import Federation
from services.scheduler.messages import agent_to_pb, event_fields, list_query_from_pb, spec_from_pb
from services.scheduler.ports import Peers, WatchEvent
from services.scheduler.service import SchedulerService

_VIEWS = (pb.RUN_AGENT_VIEW_UNSPECIFIED, pb.RUN_AGENT_VIEW_EVENTS, pb.RUN_AGENT_VIEW_RESULT)


class _Origin:
    """federation.Origin from the call's metadata, read only if federation asks (most calls never do)."""

    __slots__ = ("_context",)

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._context = context

    def forwarded(self) -> bool:
        return any(key == mesh_headers.FORWARDED_BY for key, _ in self._context.invocation_metadata() or ())


class _Encoded:
    """WatchAgent responses of the latest events, so each event is encoded once for all its watchers:
    every watcher's queue holds the same event object. Keyed by identity, a few dozen entries."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._by_id: OrderedDict[int, tuple[WatchEvent, pb.WatchAgentResponse]] = OrderedDict()

    def get(self, event: WatchEvent) -> pb.WatchAgentResponse:
        found = self._by_id.get(id(event))
        if found is not None and found[0] is event:
            return found[1]
        response = pb.WatchAgentResponse(**event_fields(event))
        self._by_id[id(event)] = (event, response)  # holding the event keeps its id from being reused
        if len(self._by_id) > self._size:
            self._by_id.popitem(last=False)
        return response


class SchedulerServicer(pb_grpc.SchedulerServiceServicer):
    def __init__(self, federation: Federation) -> None:
        self.federation = federation
        self._encoded = _Encoded()

    async def CreateAgent(
        self,
        request: pb.CreateAgentRequest,
        context: grpc.aio.ServicerContext[pb.CreateAgentRequest, pb.CreateAgentResponse],
    ) -> pb.CreateAgentResponse:
        agent = await self.federation.create(spec_from_pb(request), _Origin(context), context.time_remaining())
        return pb.CreateAgentResponse(agent=agent_to_pb(agent))

    async def GetAgent(
        self, request: pb.GetAgentRequest, context: grpc.aio.ServicerContext[pb.GetAgentRequest, pb.GetAgentResponse]
    ) -> pb.GetAgentResponse:
        agent = await self.federation.get(request.id, _Origin(context), context.time_remaining())
        return pb.GetAgentResponse(agent=agent_to_pb(agent))

    async def ListAgents(
        self,
        request: pb.ListAgentsRequest,
        context: grpc.aio.ServicerContext[pb.ListAgentsRequest, pb.ListAgentsResponse],
    ) -> pb.ListAgentsResponse:
        page = await self.federation.list(list_query_from_pb(request), _Origin(context), context.time_remaining())
        return pb.ListAgentsResponse(agents=[agent_to_pb(a) for a in page.agents], next_page_token=page.next_page_token)

    async def WatchAgent(
        self,
        request: pb.WatchAgentRequest,
        context: grpc.aio.ServicerContext[pb.WatchAgentRequest, pb.WatchAgentResponse],
    ) -> AsyncIterator[pb.WatchAgentResponse]:
        async for event in self.federation.watch(request.id, _Origin(context), context.time_remaining()):
            yield self._encoded.get(event)

    async def CancelAgent(
        self,
        request: pb.CancelAgentRequest,
        context: grpc.aio.ServicerContext[pb.CancelAgentRequest, pb.CancelAgentResponse],
    ) -> pb.CancelAgentResponse:
        agent = await self.federation.cancel(request.id, _Origin(context), context.time_remaining())
        return pb.CancelAgentResponse(agent=agent_to_pb(agent))

    async def RunAgent(
        self, request: pb.RunAgentRequest, context: grpc.aio.ServicerContext[pb.RunAgentRequest, pb.RunAgentResponse]
    ) -> AsyncIterator[pb.RunAgentResponse]:
        if request.view not in _VIEWS:
            raise InvalidArgument(
                f"view {request.view} is not a RunAgentView; use EVENTS (1) or RESULT (2)", field="view"
            )
        result_only = request.view == pb.RUN_AGENT_VIEW_RESULT
        events = self.federation.run(
            spec_from_pb(request), _Origin(context), context.time_remaining(), result_only=result_only
        )
        async for event in events:
            yield pb.RunAgentResponse(**event_fields(event))


def register(service: SchedulerService, peers: Peers | None = None) -> Callable[[grpc.aio.Server], list[str]]:
    """`peers`, when set, are the other colors' schedulers (blue/green: services/scheduler/federation.py)."""

    def add(server: grpc.aio.Server) -> list[str]:
        pb_grpc.add_SchedulerServiceServicer_to_server(SchedulerServicer(Federation(service, peers)), server)
        return [pb.DESCRIPTOR.services_by_name["SchedulerService"].full_name]

    return add
