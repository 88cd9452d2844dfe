"""SchedulerService over gRPC: protobuf in, domain call, protobuf out. Errors are domain exceptions,
mapped to statuses by the shared interceptor."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from agentfactory.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from services.common.errors import InvalidArgument, NotFound
from services.common.timestamps import to_optional_timestamp, to_unix
from services.scheduler.book import AgentChanged, WatchEvent
from services.scheduler.domain import Agent, CreateSpec, page_size
from services.scheduler.peers import Peers, is_forwarded, merge_pages
from services.scheduler.ports import Log, Output
from services.scheduler.service import Expired, SchedulerService

_VIEWS = (pb.RUN_AGENT_VIEW_UNSPECIFIED, pb.RUN_AGENT_VIEW_EVENTS, pb.RUN_AGENT_VIEW_RESULT)


def agent_to_pb(a: Agent) -> pb.Agent:
    return pb.Agent(
        id=a.id,
        request_id=a.request_id,
        template_name=a.template_name,
        template_version=a.template_version,
        input=a.input,
        labels=dict(a.labels),
        # grpc_tools' stubs take an enum field as its wrapper type (or name); the runtime takes the int.
        state=int(a.state),  # type: ignore[arg-type]
        reason=a.reason,
        output=a.output,
        output_truncated=a.output_truncated,
        exit_code=a.exit_code,
        fuel_used=a.fuel_used,
        attempts=a.attempts,
        executor=a.executor,
        create_time=to_optional_timestamp(a.create_time),
        start_time=to_optional_timestamp(a.start_time),
        finish_time=to_optional_timestamp(a.finish_time),
    )


def _spec(request: pb.CreateAgentRequest | pb.RunAgentRequest) -> CreateSpec:
    return CreateSpec(
        template_name=request.template_name,
        template_version=request.template_version,
        input=request.input,
        labels=dict(request.labels),
        request_id=request.request_id,
    )


def _event_fields(event: WatchEvent) -> dict[str, Any]:  # one field of the response's oneof, by name
    if isinstance(event, AgentChanged):
        return {"agent": agent_to_pb(event.agent)}
    if isinstance(event, Output):
        return {"output": pb.AgentOutput(data=event.data)}
    if isinstance(event, Log):
        return {"log": pb.AgentLog(level=event.level, message=event.message)}
    raise TypeError(f"unexpected watch event {event!r}")


def _created_window(request: pb.ListAgentsRequest) -> tuple[float | None, float | None]:
    after = to_unix(request.created_after) if request.HasField("created_after") else None
    before = to_unix(request.created_before) if request.HasField("created_before") else None
    return after, before


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
        response = pb.WatchAgentResponse(**_event_fields(event))
        self._by_id[id(event)] = (event, response)  # holding the event keeps its id from being reused
        if len(self._by_id) > self._size:
            self._by_id.popitem(last=False)
        return response


class SchedulerServicer(pb_grpc.SchedulerServiceServicer):
    """`peers`, when set, answers for agents another color's scheduler created (services/scheduler/peers.py)."""

    def __init__(self, service: SchedulerService, peers: Peers | None = None) -> None:
        self.service = service
        self.peers = peers
        self._encoded = _Encoded()

    async def _request_owner(
        self, request_id: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[Peers, str] | None:
        """The peers and the other color that already created the agent of this request_id, if any."""
        if (
            not request_id
            or (peers := self._ask_peers(context)) is None
            or await self.service.knows_request(request_id)
        ):
            return None
        owner = await peers.owner_of_request(request_id, context.time_remaining())
        return None if owner is None else (peers, owner)

    def _ask_peers(self, context: grpc.aio.ServicerContext[Any, Any]) -> Peers | None:
        """Peers to ask after a local NOT_FOUND: none for a call a peer already forwarded here."""
        if self.peers is None or is_forwarded(context.invocation_metadata()):
            return None
        return self.peers

    async def CreateAgent(
        self,
        request: pb.CreateAgentRequest,
        context: grpc.aio.ServicerContext[pb.CreateAgentRequest, pb.CreateAgentResponse],
    ) -> pb.CreateAgentResponse:
        if (found := await self._request_owner(request.request_id, context)) is not None:
            peers, owner = found
            return await peers.create(request, owner, context.time_remaining())
        agent, _ = await self.service.create(_spec(request), timeout=context.time_remaining())
        return pb.CreateAgentResponse(agent=agent_to_pb(agent))

    async def GetAgent(
        self, request: pb.GetAgentRequest, context: grpc.aio.ServicerContext[pb.GetAgentRequest, pb.GetAgentResponse]
    ) -> pb.GetAgentResponse:
        try:
            return pb.GetAgentResponse(agent=agent_to_pb(await self.service.get(request.id)))
        except Expired:
            raise  # this color created it and retention deleted it: no other color has it
        except NotFound:
            if (peers := self._ask_peers(context)) is None:
                raise
        return await peers.get(request, context.time_remaining())

    async def ListAgents(
        self,
        request: pb.ListAgentsRequest,
        context: grpc.aio.ServicerContext[pb.ListAgentsRequest, pb.ListAgentsResponse],
    ) -> pb.ListAgentsResponse:
        agents, token = await self.service.list(
            request.state,
            request.template_name,
            request.label_selector,
            request.page_size,
            request.page_token,
            request.request_id,
            *_created_window(request),
        )
        local = pb.ListAgentsResponse(agents=[agent_to_pb(a) for a in agents], next_page_token=token)
        if (peers := self._ask_peers(context)) is None:
            return local
        if request.request_id:
            return local if agents else await peers.list_request(request, context.time_remaining())
        # Every color's agents, one page: each color lists from the same cursor, the pages merge.
        others = await peers.list_pages(request, context.time_remaining())

        def token_after(last: pb.Agent) -> str:
            return self.service.page_token_after(
                request.state,
                request.template_name,
                request.label_selector,
                to_unix(last.create_time),
                last.id,
                *_created_window(request),
            )

        return merge_pages([local, *others], page_size(request.page_size), token_after)

    async def WatchAgent(
        self,
        request: pb.WatchAgentRequest,
        context: grpc.aio.ServicerContext[pb.WatchAgentRequest, pb.WatchAgentResponse],
    ) -> AsyncIterator[pb.WatchAgentResponse]:
        try:
            async for event in self.service.watch(request.id):
                yield self._encoded.get(event)
            return
        except NotFound:  # raised before the first message: nothing was sent yet
            if (peers := self._ask_peers(context)) is None:
                raise
        async for response in peers.watch(request, context.time_remaining()):
            yield response

    async def CancelAgent(
        self,
        request: pb.CancelAgentRequest,
        context: grpc.aio.ServicerContext[pb.CancelAgentRequest, pb.CancelAgentResponse],
    ) -> pb.CancelAgentResponse:
        try:
            return pb.CancelAgentResponse(agent=agent_to_pb(await self.service.cancel(request.id)))
        except NotFound:
            if (peers := self._ask_peers(context)) is None:
                raise
        return await peers.cancel(request, context.time_remaining())

    async def RunAgent(
        self, request: pb.RunAgentRequest, context: grpc.aio.ServicerContext[pb.RunAgentRequest, pb.RunAgentResponse]
    ) -> AsyncIterator[pb.RunAgentResponse]:
        if request.view not in _VIEWS:
            raise InvalidArgument(
                f"view {request.view} is not a RunAgentView; use EVENTS (1) or RESULT (2)", field="view"
            )
        if (found := await self._request_owner(request.request_id, context)) is not None:
            peers, owner = found
            async for response in peers.run(request, owner, context.time_remaining()):
                yield response
            return
        result_only = request.view == pb.RUN_AGENT_VIEW_RESULT
        async for event in self.service.run(_spec(request), context.time_remaining(), result_only=result_only):
            yield pb.RunAgentResponse(**_event_fields(event))


def register(service: SchedulerService, peers: Peers | None = None) -> Callable[[grpc.aio.Server], list[str]]:
    def add(server: grpc.aio.Server) -> list[str]:
        pb_grpc.add_SchedulerServiceServicer_to_server(SchedulerServicer(service, peers), server)
        return [pb.DESCRIPTOR.services_by_name["SchedulerService"].full_name]

    return add
