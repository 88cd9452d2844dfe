"""Protobuf ⇄ domain (services/scheduler/messages.py): what crosses to another color and back lands where
it started, so the other color accepts a merged listing's page token and relays agents unchanged."""

from __future__ import annotations

import time

import pytest

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from services.common.timestamps import to_timestamp
from services.scheduler import messages
from services.scheduler.domain import CreateSpec, ListQuery, PageCursor, encode_page_token, list_query
from services.scheduler.ports import AgentChanged, Log, Output

NOW = time.time()
YEAR_1, YEAR_9999 = -62_135_596_800.0, 253_402_300_799.0


def _pb_agent(**fields: object) -> pb.Agent:
    base = pb.Agent(
        id="a1", request_id="key", template_name="echo", template_version="1.2.3", input=b"\x00in",
        labels={"team": "a", "env": "prod"}, state=pb.AGENT_STATE_SUCCEEDED, reason="ran", output=b"OUT",
        output_truncated=True, exit_code=3, fuel_used=2**40, attempts=2, executor="executor-blue-1",
        create_time=to_timestamp(NOW), start_time=to_timestamp(NOW + 0.25), finish_time=to_timestamp(NOW + 1.5),
    )  # fmt: skip
    base.MergeFrom(pb.Agent(**fields))  # type: ignore[arg-type]  # a test's few fields
    return base


@pytest.mark.parametrize(
    "agent",
    [
        _pb_agent(),
        _pb_agent(state=pb.AGENT_STATE_PENDING),  # not started: start and finish times stay unset
        _pb_agent(create_time=to_timestamp(1.000001)),
    ],
)
def test_another_colors_agent_is_relayed_unchanged(agent: pb.Agent) -> None:
    if agent.state == pb.AGENT_STATE_PENDING:
        agent.ClearField("start_time")
        agent.ClearField("finish_time")
    assert messages.agent_to_pb(messages.agent_from_pb(agent)) == agent


def test_watch_events_are_relayed_unchanged() -> None:
    for event in (AgentChanged(messages.agent_from_pb(_pb_agent())), Output(b"chunk"), Log("warn", "fell behind")):
        response = pb.RunAgentResponse(**messages.event_fields(event))
        assert messages.event_from_pb(response) == event
    assert messages.event_from_pb(pb.WatchAgentResponse()) is None


def test_a_forwarded_spec_is_the_callers() -> None:
    spec = CreateSpec("echo", "1.0.0", b"in", {"k": "v"}, "key-1")
    assert messages.spec_from_pb(messages.create_request(spec)) == spec
    assert messages.spec_from_pb(messages.run_request(spec, result_only=False)) == spec
    assert messages.run_request(spec, result_only=True).view == pb.RUN_AGENT_VIEW_RESULT
    assert messages.run_request(spec, result_only=False).view == pb.RUN_AGENT_VIEW_EVENTS


@pytest.mark.parametrize(
    "selector",
    ["", "team=a", "team=a,env=prod", "k===x", "k=a=b", "k=", " k = v , j==w ", "a/b.c_d-e=v"],
)
@pytest.mark.parametrize(
    "window",
    [(None, None), (NOW, None), (None, NOW + 0.000001), (YEAR_1, YEAR_9999), (-1.5, 0.0), (1e9 + 0.123456, None)],
)
def test_a_listing_asked_of_another_color_parses_back_to_itself(
    selector: str, window: tuple[float | None, float | None]
) -> None:
    query = list_query(3, "echo", selector, 7, "", "", *window)
    assert messages.list_query_from_pb(messages.list_request(query)) == query
    # With a cursor: the other color checks the token against the filter it parses, and accepts it.
    token = encode_page_token(PageCursor.of(NOW, "a9"), query.flt)
    paged = list_query(3, "echo", selector, 7, token, "", *window)
    assert paged.after == PageCursor.of(NOW, "a9")
    assert messages.list_query_from_pb(messages.list_request(paged)) == paged


def test_a_request_id_listing_and_defaults_cross_unchanged() -> None:
    for query in (ListQuery(request_id="key-1", size=1), list_query(0, "", "", 0, "ignored", "key-1"), ListQuery()):
        assert messages.list_query_from_pb(messages.list_request(query)) == query
