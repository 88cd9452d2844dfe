"""protobuf <-> domain for agentfactory.executor.v1.ExecutorService. No logic lives here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import duration_pb2

from agentfactory.executor.v1 import executor_service_pb2 as pb
from agentfactory.executor.v1 import executor_service_pb2_grpc as pb_grpc
from services.common import mesh_headers
from services.common.errors import AgentFactoryError
from services.executor import events
from services.executor.service import ExecutorService, RunCommand

_OUTCOMES = {
    events.Outcome.SUCCEEDED: pb.RUN_OUTCOME_SUCCEEDED,
    events.Outcome.FAILED: pb.RUN_OUTCOME_FAILED,
    events.Outcome.TIMED_OUT: pb.RUN_OUTCOME_TIMED_OUT,
    events.Outcome.RESOURCE_EXHAUSTED: pb.RUN_OUTCOME_RESOURCE_EXHAUSTED,
    events.Outcome.CANCELLED: pb.RUN_OUTCOME_CANCELLED,
}
_LIMITS = {
    events.LimitKind.NONE: pb.LIMIT_UNSPECIFIED,
    events.LimitKind.FUEL: pb.LIMIT_FUEL,
    events.LimitKind.MEMORY: pb.LIMIT_MEMORY,
    events.LimitKind.DEADLINE: pb.LIMIT_DEADLINE,
    events.LimitKind.OUTPUT: pb.LIMIT_OUTPUT,
    events.LimitKind.TOOL_CALLS: pb.LIMIT_TOOL_CALLS,
    events.LimitKind.STACK: pb.LIMIT_STACK,
    events.LimitKind.SCRATCH: pb.LIMIT_SCRATCH,
}


def event_to_proto(event: events.RunEvent) -> pb.RunEvent:
    if isinstance(event, events.Output):
        return pb.RunEvent(output=pb.OutputChunk(data=event.data))
    if isinstance(event, events.Log):
        return pb.RunEvent(log=pb.LogLine(level=event.level, message=event.message))
    if isinstance(event, events.ToolCalled):
        return pb.RunEvent(tool_call=pb.ToolCall(tool=event.tool, allowed=event.allowed, detail=event.detail))
    if isinstance(event, events.Accepted):
        return pb.RunEvent(accepted=pb.RunAccepted(executor_id=event.executor_id))
    if isinstance(event, events.Started):
        return pb.RunEvent(
            started=pb.RunStarted(module_sha256=event.module_sha256, key_version=event.key_version, cache=event.cache)
        )
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(event.duration_seconds * 1e9))
    return pb.RunEvent(
        finished=pb.RunFinished(
            outcome=_OUTCOMES[event.outcome],
            exit_code=event.exit_code,
            trap=event.trap,
            limit=_LIMITS[event.limit],
            reason=event.reason,
            fuel_used=event.fuel_used,
            peak_memory_bytes=event.peak_memory_bytes,
            duration=duration,
            tool_calls=event.tool_calls,
            output_bytes=event.output_bytes,
        )
    )


class ExecutorServicer(pb_grpc.ExecutorServiceServicer):
    def __init__(self, service: ExecutorService) -> None:
        self.service = service

    async def Run(
        self, request: pb.RunRequest, context: grpc.aio.ServicerContext[pb.RunRequest, pb.RunResponse]
    ) -> AsyncIterator[pb.RunResponse]:
        command = RunCommand(
            agent_id=request.agent_id,
            template_name=request.template_name,
            template_version=request.template_version,
            input=request.input,
        )
        try:
            async for batch in self.service.run(command):
                yield pb.RunResponse(events=[event_to_proto(event) for event in batch])
        except AgentFactoryError:
            # A refusal comes before any event: name ourselves, or the scheduler could only name its
            # sidecar. (Error path only: a run that ends OK adds nothing.)
            context.set_trailing_metadata(((mesh_headers.EXECUTOR, self.service.executor_id),))
            raise

    async def GetCapacity(
        self,
        request: pb.GetCapacityRequest,
        context: grpc.aio.ServicerContext[pb.GetCapacityRequest, pb.GetCapacityResponse],
    ) -> pb.GetCapacityResponse:
        cap = self.service.capacity()
        return pb.GetCapacityResponse(
            executor_id=self.service.executor_id,
            workers=cap.workers,
            max_workers=cap.max_workers,
            busy=cap.busy,
            queued=cap.queued,
        )
