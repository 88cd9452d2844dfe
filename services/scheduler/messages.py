"""Protobuf ⇄ domain for the scheduler's contract, both ways: the servicer reads requests and writes
responses; the peers adapter (peers.py) writes requests to another color and reads its responses.

A conversion that crosses to another color and back must land where it started: the other color
checks a page token against the filter it parses, so a filter written here has to parse to the same
filter there (tests/unit/scheduler/test_messages.py).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from services.common.timestamps import to_optional_timestamp, to_unix
from services.scheduler.domain import Agent, AgentState, CreateSpec, ListQuery, encode_page_token, list_query
from services.scheduler.ports import AgentChanged, Log, Output, WatchEvent


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


def agent_from_pb(m: pb.Agent) -> Agent:
    """Another color's agent as the contract shows it. What the contract does not carry (the version
    asked for, retry policy, journal bookkeeping) keeps its default: this scheduler only relays it."""
    return Agent(
        id=m.id,
        template_name=m.template_name,
        template_version=m.template_version,
        requested_version="",
        input=m.input,
        labels=dict(m.labels),
        retryable=False,
        timeout_ms=0,
        create_time=to_unix(m.create_time),
        request_id=m.request_id,
        state=AgentState(m.state),
        reason=m.reason,
        output=m.output,
        output_truncated=m.output_truncated,
        exit_code=m.exit_code,
        fuel_used=m.fuel_used,
        attempts=m.attempts,
        executor=m.executor,
        start_time=to_unix(m.start_time) if m.HasField("start_time") else None,
        finish_time=to_unix(m.finish_time) if m.HasField("finish_time") else None,
    )


def spec_from_pb(request: pb.CreateAgentRequest | pb.RunAgentRequest) -> CreateSpec:
    return CreateSpec(
        template_name=request.template_name,
        template_version=request.template_version,
        input=request.input,
        labels=dict(request.labels),
        request_id=request.request_id,
    )


def _spec_fields(spec: CreateSpec) -> dict[str, Any]:  # what CreateAgentRequest and RunAgentRequest share
    return {
        "template_name": spec.template_name,
        "template_version": spec.template_version,
        "input": spec.input,
        "labels": dict(spec.labels),
        "request_id": spec.request_id,
    }


def create_request(spec: CreateSpec) -> pb.CreateAgentRequest:
    return pb.CreateAgentRequest(**_spec_fields(spec))


def run_request(spec: CreateSpec, result_only: bool) -> pb.RunAgentRequest:
    view = pb.RUN_AGENT_VIEW_RESULT if result_only else pb.RUN_AGENT_VIEW_EVENTS
    return pb.RunAgentRequest(**_spec_fields(spec), view=view)


def event_fields(event: WatchEvent) -> dict[str, Any]:
    """The one field of a WatchAgentResponse's or RunAgentResponse's oneof, by name."""
    if isinstance(event, AgentChanged):
        return {"agent": agent_to_pb(event.agent)}
    if isinstance(event, Output):
        return {"output": pb.AgentOutput(data=event.data)}
    if isinstance(event, Log):
        return {"log": pb.AgentLog(level=event.level, message=event.message)}
    raise TypeError(f"unexpected watch event {event!r}")


def event_from_pb(response: pb.WatchAgentResponse | pb.RunAgentResponse) -> WatchEvent | None:
    """None for a response with no event set (nothing to relay)."""
    kind = response.WhichOneof("event")
    if kind == "agent":
        return AgentChanged(agent_from_pb(response.agent))
    if kind == "output":
        return Output(response.output.data)
    if kind == "log":
        return Log(response.log.level, response.log.message)
    return None


def list_query_from_pb(request: pb.ListAgentsRequest) -> ListQuery:
    """The client's listing, checked (INVALID_ARGUMENT for what does not parse: domain.list_query)."""
    return list_query(
        request.state,
        request.template_name,
        request.label_selector,
        request.page_size,
        request.page_token,
        request.request_id,
        to_unix(request.created_after) if request.HasField("created_after") else None,
        to_unix(request.created_before) if request.HasField("created_before") else None,
    )


def list_request(query: ListQuery) -> pb.ListAgentsRequest:
    """The same listing, to ask another color: it parses back to `query` (list_query_from_pb)."""
    flt = query.flt
    request = pb.ListAgentsRequest(
        state=int(flt.state or 0),  # type: ignore[arg-type]  # the enum's int, as in agent_to_pb
        template_name=flt.template_name,
        # The parser drops one "=" after the key ("k==v" is accepted): a value that starts with "=" keeps it.
        label_selector=",".join(f"{k}={'=' if v.startswith('=') else ''}{v}" for k, v in flt.labels),
        page_size=query.size,
        page_token=encode_page_token(query.after, flt) if query.after is not None else "",
        request_id=query.request_id,
    )
    if flt.created_after_us is not None:
        request.created_after.CopyFrom(_timestamp_us(flt.created_after_us))
    if flt.created_before_us is not None:
        request.created_before.CopyFrom(_timestamp_us(flt.created_before_us))
    return request


def _timestamp_us(us: int) -> Timestamp:
    seconds, micros = divmod(us, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)
