"""Merging the same page of several colors' listings (services/scheduler/peers.py)."""

from __future__ import annotations

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from services.common.timestamps import to_timestamp
from services.scheduler.peers import is_forwarded, merge_pages


def _agent(agent_id: str, created: float) -> pb.Agent:
    return pb.Agent(id=agent_id, create_time=to_timestamp(created))


def _page(*agents: pb.Agent, more: bool = False) -> pb.ListAgentsResponse:
    return pb.ListAgentsResponse(agents=agents, next_page_token="more" if more else "")


def _after(last: pb.Agent) -> str:
    return f"after:{last.id}"


def test_pages_interleave_newest_first_and_continue_after_the_last_taken() -> None:
    blue = _page(_agent("b3", 30.0), _agent("b2", 20.0), _agent("b1", 10.0))
    green = _page(_agent("g3", 25.0), _agent("g1", 5.0))
    merged = merge_pages([blue, green], 3, _after)
    assert [a.id for a in merged.agents] == ["b3", "g3", "b2"]
    assert merged.next_page_token == "after:b2"  # b1 and g1 come on the next page


def test_the_last_page_has_no_token_unless_a_color_has_more() -> None:
    blue = _page(_agent("b1", 10.0))
    green = _page(_agent("g1", 5.0))
    assert merge_pages([blue, green], 5, _after).next_page_token == ""
    # Everything fits, but green said it had more beyond its page: continue after the last one shown.
    assert merge_pages([blue, _page(_agent("g1", 5.0), more=True)], 5, _after).next_page_token == "after:g1"
    assert merge_pages([_page(), _page()], 5, _after) == pb.ListAgentsResponse()


def test_the_same_microsecond_orders_by_id() -> None:
    merged = merge_pages([_page(_agent("a", 1.0)), _page(_agent("c", 1.0), _agent("b", 1.0))], 3, _after)
    assert [a.id for a in merged.agents] == ["c", "b", "a"]


def test_a_forwarded_call_is_recognised_by_its_header() -> None:
    assert is_forwarded((("x-agentfactory-forwarded-by", "scheduler-blue"),))
    assert not is_forwarded((("x-agentfactory-color", "green"),)) and not is_forwarded(None)
