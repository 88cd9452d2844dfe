"""Two schedulers, each with its own journal (two colors): the one that did not create an agent
answers GetAgent, WatchAgent and CancelAgent for it by asking the other, and forwards a CreateAgent
or RunAgent whose request_id the other already used (no second agent). Here the peers are wired
to each other's app port directly; through the mesh the same call goes via the sidecar, which
routes on x-agentfactory-color (tests/e2e/test_bluegreen.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from tests.integration.scheduler.conftest import TIMEOUT, Scheduler, SchedulerFactory

S = pb.AgentState


@pytest.fixture
def pair(scheduler: SchedulerFactory, tmp_path: Path) -> tuple[Scheduler, Scheduler]:
    """(owner, other): `other` asks `owner` about agents it does not know; `owner` has no peers."""
    owner = scheduler(AF_SERVICE_ID="scheduler-blue", AF_DATA_DIR=str(tmp_path / "blue"))
    other = scheduler(
        AF_SERVICE_ID="scheduler-green",
        AF_DATA_DIR=str(tmp_path / "green"),
        AF_SCHEDULER_ADDR=owner.proc.addr,
        AF_PEER_COLORS="blue",
    )
    return owner, other


def test_get_watch_and_cancel_reach_the_owner(pair: tuple[Scheduler, Scheduler]) -> None:
    owner, other = pair
    agent = owner.create("sched-spin")  # runs until cancelled
    assert other.get(agent.id).id == agent.id
    assert other.metric("agentfactory_scheduler_agents_created_total") == 0  # nothing copied, only asked

    watched: list[pb.WatchAgentResponse] = []
    started = threading.Event()

    def watch() -> None:
        for response in other.stub.WatchAgent(pb.WatchAgentRequest(id=agent.id), timeout=TIMEOUT):
            watched.append(response)
            started.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert started.wait(TIMEOUT), "the relayed watch sent nothing"
    cancelled = other.stub.CancelAgent(pb.CancelAgentRequest(id=agent.id), timeout=TIMEOUT).agent
    assert cancelled.state == S.AGENT_STATE_CANCELLED
    watcher.join(TIMEOUT)
    assert not watcher.is_alive(), "the relayed watch did not end with the agent"
    states = [r.agent.state for r in watched if r.WhichOneof("event") == "agent"]
    assert states[0] in (S.AGENT_STATE_PENDING, S.AGENT_STATE_RUNNING) and states[-1] == S.AGENT_STATE_CANCELLED
    assert owner.get(agent.id).state == S.AGENT_STATE_CANCELLED  # the owner's journal holds the ending
    for method in ("GetAgent", "WatchAgent", "CancelAgent"):
        assert other.metric("agentfactory_scheduler_peer_calls_total", method=method, result="ok") >= 1, method
    assert owner.metric("agentfactory_scheduler_peer_calls_total") == 0


def test_an_unknown_agent_is_not_found_on_either_and_never_bounces(
    pair: tuple[Scheduler, Scheduler], tmp_path: Path
) -> None:
    owner, other = pair
    # Make it a ring: the owner now asks `other` too. A forwarded call is not forwarded again.
    owner.proc.stop()
    owner.proc.env.update(AF_SCHEDULER_ADDR=other.proc.addr, AF_PEER_COLORS="green")
    owner.restart()
    for sched in (owner, other):
        with pytest.raises(grpc.RpcError) as err:
            sched.get("no-such-agent")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "no-such-agent" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            list(sched.stub.WatchAgent(pb.WatchAgentRequest(id="no-such-agent"), timeout=TIMEOUT))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as err:
            sched.stub.CancelAgent(pb.CancelAgentRequest(id="no-such-agent"), timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_unreachable_peer_is_unavailable_not_a_false_not_found(scheduler: SchedulerFactory, tmp_path: Path) -> None:
    lonely = scheduler(AF_SCHEDULER_ADDR="127.0.0.1:1", AF_PEER_COLORS="blue")
    with pytest.raises(grpc.RpcError) as err:
        lonely.get("maybe-on-blue")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "could not be asked" in err.value.details() and "blue" in err.value.details()
    assert lonely.metric("agentfactory_scheduler_peer_calls_total", method="GetAgent", result="unreachable") == 1
    # Creation does not depend on the other color being up: the key is created here.
    assert lonely.create("echo-upper", b"x", request_id="while-blue-is-down").id
    assert lonely.metric("agentfactory_scheduler_peer_calls_total", method="ListAgents", result="unreachable") == 1


def test_a_request_id_used_on_the_other_color_creates_no_second_agent(pair: tuple[Scheduler, Scheduler]) -> None:
    owner, other = pair
    first = owner.create("echo-upper", b"once", request_id="retry-1")
    again = other.create("echo-upper", b"once", request_id="retry-1")  # a client retry on the other color
    assert again.id == first.id
    assert other.metric("agentfactory_scheduler_agents_created_total") == 0
    with pytest.raises(grpc.RpcError) as err:
        other.create("echo-upper", b"different", request_id="retry-1")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and "retry-1" in err.value.details()
    # RunAgent with the key follows the owner's agent to its end.
    events = list(other.stub.RunAgent(pb.RunAgentRequest(template_name="echo-upper", input=b"once",
                                                         request_id="retry-1"), timeout=TIMEOUT))  # fmt: skip
    assert events[-1].agent.id == first.id and events[-1].agent.state == S.AGENT_STATE_SUCCEEDED
    assert events[-1].agent.output == b"ONCE"
    listed = other.stub.ListAgents(pb.ListAgentsRequest(request_id="retry-1"), timeout=TIMEOUT).agents
    assert [a.id for a in listed] == [first.id]
    # The owner's status comes back with the relay: a limit is RESOURCE_EXHAUSTED on either color.
    with pytest.raises(grpc.RpcError) as err:
        list(owner.stub.RunAgent(pb.RunAgentRequest(template_name="sched-burn", request_id="burn-1"), timeout=TIMEOUT))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as err:
        list(other.stub.RunAgent(pb.RunAgentRequest(template_name="sched-burn", request_id="burn-1"), timeout=TIMEOUT))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    assert other.metric("agentfactory_scheduler_agents_created_total") == 0
    # A new key is created where the call lands.
    fresh = other.create("echo-upper", b"new", request_id="retry-2")
    assert fresh.id != first.id and other.metric("agentfactory_scheduler_agents_created_total") == 1


def test_a_listing_pages_through_both_colors_newest_first(pair: tuple[Scheduler, Scheduler]) -> None:
    owner, other = pair
    created = []
    for i in range(6):  # interleaved in time across the two journals
        sched = owner if i % 2 else other
        created.append(sched.create("echo-upper", b"x", labels={"batch": "merge"}).id)
    seen, token = [], ""
    while True:
        request = pb.ListAgentsRequest(label_selector="batch=merge", page_size=4, page_token=token)
        page = other.stub.ListAgents(request, timeout=TIMEOUT)
        seen += [a.id for a in page.agents]
        token = page.next_page_token
        if not token:
            break
    assert seen == created[::-1]  # every agent once, newest first, across both colors
    # The owner was given no peers: it lists its own journal only.
    mine = owner.stub.ListAgents(pb.ListAgentsRequest(label_selector="batch=merge"), timeout=TIMEOUT).agents
    assert [a.id for a in mine] == created[1::2][::-1]
    # A page token from the merged listing is understood by either color (one cursor for all).
    first = other.stub.ListAgents(pb.ListAgentsRequest(label_selector="batch=merge", page_size=3), timeout=TIMEOUT)
    rest = owner.stub.ListAgents(
        pb.ListAgentsRequest(label_selector="batch=merge", page_size=10, page_token=first.next_page_token),
        timeout=TIMEOUT,
    ).agents
    assert [a.id for a in rest] == [i for i in created[::-1][3:] if i in created[1::2]]
