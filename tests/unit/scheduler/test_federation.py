"""Blue/green federation (services/scheduler/federation.py): when a color asks the others, and what
their answers mean together. Two colors in process, each a real SchedulerService on its own SQLite
journal; the Peers port between them is an in-process fake that delivers each call to the other
color's Federation as forwarded, the way the gRPC adapter does through the mesh (that adapter is
tested by tests/integration/scheduler/test_peers.py and tests/e2e/test_bluegreen.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from services.common import errors
from services.scheduler import domain
from services.scheduler.domain import (
    Agent,
    AgentState,
    CreateSpec,
    ListQuery,
    Page,
    RunFinished,
    RunOutcome,
    TemplateInfo,
    list_query,
)
from services.scheduler.federation import Federation, merge_pages
from services.scheduler.journal import Journal
from services.scheduler.ports import (
    Accepted,
    AgentChanged,
    Ended,
    ExecutorEvent,
    PeerUnreachable,
    RunSpec,
    Started,
    WatchEvent,
)
from services.scheduler.service import Expired, SchedulerService, ServiceSettings
from tests.unit.scheduler import doubles

ECHO = TemplateInfo("echo", "1.0.0", retryable=False, timeout_ms=2000)
SPIN = TemplateInfo("spin", "1.0.0", retryable=False, timeout_ms=60_000)
BURN = TemplateInfo("burn", "1.0.0", retryable=False, timeout_ms=2000)


class Origin:
    def __init__(self, forwarded: bool) -> None:
        self._forwarded = forwarded

    def forwarded(self) -> bool:
        return self._forwarded


DIRECT, FORWARDED = Origin(False), Origin(True)


async def _by_template(spec: RunSpec) -> AsyncIterator[ExecutorEvent]:
    if spec.template_name == "spin":
        async for event in doubles.forever(spec):
            yield event
    elif spec.template_name == "burn":
        yield Accepted("ex-double")
        yield Started()
        yield RunFinished(RunOutcome.RESOURCE_EXHAUSTED, reason="fuel exhausted")
        yield Ended("OK")
    else:
        async for event in doubles.succeed(spec):
            yield event


class InProcessPeers:
    """ports.Peers over the other colors' Federations: every call arrives there forwarded. A color in
    `down` answers as one that cannot be reached; `calls` records (method, color)."""

    def __init__(self) -> None:
        self.others: dict[str, Federation] = {}
        self.down: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    @property
    def colors(self) -> Sequence[str]:
        return list(self.others)

    def _at(self, method: str, color: str) -> Federation:
        self.calls.append((method, color))
        if color in self.down:
            raise PeerUnreachable("UNAVAILABLE", "connection refused")
        return self.others[color]

    async def get(self, color: str, agent_id: str, timeout: float | None) -> Agent:
        return await self._at("get", color).get(agent_id, FORWARDED, timeout)

    async def cancel(self, color: str, agent_id: str, timeout: float | None) -> Agent:
        return await self._at("cancel", color).cancel(agent_id, FORWARDED, timeout)

    async def watch(self, color: str, agent_id: str, timeout: float | None) -> AsyncIterator[WatchEvent]:
        async for event in self._at("watch", color).watch(agent_id, FORWARDED, timeout):
            yield event

    async def list_page(self, color: str, query: ListQuery, timeout: float | None) -> Page:
        return await self._at("list", color).list(query, FORWARDED, timeout)

    async def create(self, color: str, spec: CreateSpec, timeout: float | None) -> Agent:
        return await self._at("create", color).create(spec, FORWARDED, timeout)

    async def run(
        self, color: str, spec: CreateSpec, timeout: float | None, result_only: bool
    ) -> AsyncIterator[WatchEvent]:
        async for event in self._at("run", color).run(spec, FORWARDED, timeout, result_only=result_only):
            yield event

    async def close(self) -> None:
        pass


@dataclasses.dataclass
class Color:
    service: SchedulerService
    federation: Federation
    peers: InProcessPeers


@pytest.fixture
async def colors(tmp_path: Path) -> AsyncIterator[tuple[Color, Color]]:
    """(blue, green), each asking the other: a ring, as in the mesh."""
    made: list[tuple[Color, Journal]] = []
    for name in ("blue", "green"):
        journal = Journal.open(tmp_path / name)
        executors = doubles.FakeExecutors({"ex-a": _by_template})
        service = SchedulerService(journal, doubles.Templates(ECHO, SPIN, BURN), executors,
                                   ServiceSettings(cancel_wait_seconds=5.0))  # type: ignore[arg-type]  # fmt: skip
        await service.start()
        peers = InProcessPeers()
        made.append((Color(service, Federation(service, peers), peers), journal))
    (blue, _), (green, _) = made
    blue.peers.others["green"] = green.federation
    green.peers.others["blue"] = blue.federation
    yield blue, green
    for color, journal in made:
        await color.service.stop(0)
        journal.close()


async def collect(stream: AsyncIterator[WatchEvent]) -> tuple[list[WatchEvent], errors.AgentFactoryError | None]:
    events: list[WatchEvent] = []
    try:
        async for event in stream:
            events.append(event)
    except errors.AgentFactoryError as exc:
        return events, exc
    return events, None


def states(events: list[WatchEvent]) -> list[AgentState]:
    return [e.agent.state for e in events if isinstance(e, AgentChanged)]


# --- an id this color does not know --------------------------------------------------------------


async def test_get_watch_and_cancel_reach_the_owner(colors: tuple[Color, Color]) -> None:
    blue, green = colors
    agent, _ = await blue.service.create(CreateSpec("spin"))
    assert (await green.federation.get(agent.id, DIRECT, 5.0)).id == agent.id
    watch = green.federation.watch(agent.id, DIRECT, 5.0)
    first = await anext(watch)
    assert isinstance(first, AgentChanged) and first.agent.id == agent.id
    cancelled = await green.federation.cancel(agent.id, DIRECT, 5.0)
    assert cancelled.state is AgentState.CANCELLED
    rest, error = await collect(watch)
    assert error is None and states(rest)[-1] is AgentState.CANCELLED  # the relayed watch ends with the agent
    assert (await blue.service.get(agent.id)).state is AgentState.CANCELLED  # the owner's journal has it
    assert not await green.service.knows_request(agent.id) and await green.service.journal.count() == 0
    assert green.peers.calls == [("get", "blue"), ("watch", "blue"), ("cancel", "blue")]
    assert blue.peers.calls == []  # a forwarded call is answered by its owner alone


async def test_an_unknown_agent_is_not_found_on_either_color_and_never_bounces(colors: tuple[Color, Color]) -> None:
    blue, green = colors
    for here, there in ((blue, green), (green, blue)):
        for ask in (here.federation.get, here.federation.cancel):
            with pytest.raises(errors.NotFound, match="no-such-agent"):
                await ask("no-such-agent", DIRECT, 5.0)
        events, error = await collect(here.federation.watch("no-such-agent", DIRECT, 5.0))
        assert events == [] and isinstance(error, errors.NotFound)
        assert len(here.peers.calls) == 3 and there.peers.calls == []  # asked once each, never forwarded back
        here.peers.calls.clear()


async def test_a_forwarded_call_is_answered_by_this_color_alone(colors: tuple[Color, Color]) -> None:
    blue, _ = colors
    with pytest.raises(errors.NotFound):
        await blue.federation.get("on-green-maybe", FORWARDED, 5.0)
    assert await blue.federation.list(list_query(0, "", "", 0, "", "some-key"), FORWARDED, 5.0) == Page([])
    assert blue.peers.calls == []


async def test_an_expired_agent_is_not_asked_about(
    colors: tuple[Color, Color], monkeypatch: pytest.MonkeyPatch
) -> None:
    blue, _ = colors

    async def expired(agent_id: str) -> Agent:
        raise Expired(f"agent {agent_id!r} expired")

    monkeypatch.setattr(blue.service, "get", expired)
    with pytest.raises(Expired):
        await blue.federation.get("old", DIRECT, 5.0)
    assert blue.peers.calls == []  # this color created it: no other color has it


async def test_an_unreachable_color_is_unavailable_not_a_false_not_found(colors: tuple[Color, Color]) -> None:
    _, green = colors
    green.peers.down.add("blue")
    with pytest.raises(errors.Unavailable) as err:
        await green.federation.get("maybe-on-blue", DIRECT, 5.0)
    assert "could not be asked" in err.value.message and "blue: UNAVAILABLE: connection refused" in err.value.message
    events, error = await collect(green.federation.watch("maybe-on-blue", DIRECT, 5.0))
    assert events == [] and isinstance(error, errors.Unavailable)
    # Creation does not depend on the other color: the key is created here, listings leave blue out.
    agent = await green.federation.create(CreateSpec("echo", input=b"x", request_id="while-blue-is-down"), DIRECT, 5.0)
    assert await green.service.knows_request("while-blue-is-down")
    page = await green.federation.list(list_query(0, "", "", 0, ""), DIRECT, 5.0)
    assert [a.id for a in page.agents] == [agent.id]


# --- a request_id another color used -------------------------------------------------------------


async def test_a_request_id_used_on_the_other_color_creates_no_second_agent(colors: tuple[Color, Color]) -> None:
    blue, green = colors
    first = await blue.federation.create(CreateSpec("echo", input=b"once", request_id="retry-1"), DIRECT, 5.0)
    again = await green.federation.create(CreateSpec("echo", input=b"once", request_id="retry-1"), DIRECT, 5.0)
    assert again.id == first.id and not await green.service.knows_request("retry-1")
    with pytest.raises(errors.AlreadyExists, match="retry-1"):
        await green.federation.create(CreateSpec("echo", input=b"different", request_id="retry-1"), DIRECT, 5.0)
    # RunAgent with the key follows the owner's agent to its end.
    run = green.federation.run(CreateSpec("echo", input=b"once", request_id="retry-1"), DIRECT, 5.0, result_only=True)
    events, error = await collect(run)
    assert error is None and isinstance(events[-1], AgentChanged)
    assert events[-1].agent.id == first.id and events[-1].agent.state is AgentState.SUCCEEDED
    listed = await green.federation.list(list_query(0, "", "", 0, "", "retry-1"), DIRECT, 5.0)
    assert [a.id for a in listed.agents] == [first.id]
    # The owner's ending comes back with the relay: a limit is RESOURCE_EXHAUSTED on either color.
    for color in (blue, green):
        run = color.federation.run(CreateSpec("burn", request_id="burn-1"), DIRECT, 5.0, result_only=False)
        _, error = await collect(run)
        assert isinstance(error, errors.ResourceExhausted), error
    assert not await green.service.knows_request("burn-1")
    # A new key is created where the call lands.
    fresh = await green.federation.create(CreateSpec("echo", input=b"new", request_id="retry-2"), DIRECT, 5.0)
    assert fresh.id != first.id and await green.service.knows_request("retry-2")


async def test_a_run_without_request_id_is_the_services_own_stream(colors: tuple[Color, Color]) -> None:
    blue, _ = colors
    run = blue.federation.run(CreateSpec("echo", input=b"hi"), DIRECT, 5.0, result_only=True)
    # Not wrapped: the RunAgent hot path pays nothing for federation (no extra generator, no peer call).
    assert run.ag_code is SchedulerService.run.__code__  # type: ignore[attr-defined]  # an async generator
    events, error = await collect(run)
    assert error is None and states(events)[-1] is AgentState.SUCCEEDED
    assert blue.peers.calls == []


# --- listings across colors ----------------------------------------------------------------------


async def test_a_listing_pages_through_both_colors_newest_first(colors: tuple[Color, Color]) -> None:
    blue, green = colors
    created = []
    for i in range(6):  # interleaved in time across the two journals
        color = blue if i % 2 else green
        created.append((await color.service.create(CreateSpec("echo", input=b"x", labels={"batch": "merge"})))[0].id)
    seen, token = [], ""
    while True:
        page = await green.federation.list(list_query(0, "", "batch=merge", 4, token), DIRECT, 5.0)
        seen += [a.id for a in page.agents]
        token = page.next_page_token
        if not token:
            break
    assert seen == created[::-1]  # every agent once, newest first, across both colors
    mine = await blue.service.list(list_query(0, "", "batch=merge", 0, ""))
    assert [a.id for a in mine.agents] == created[1::2][::-1]
    # A page token from the merged listing is understood by either color (one cursor for all).
    first = await green.federation.list(list_query(0, "", "batch=merge", 3, ""), DIRECT, 5.0)
    rest = await blue.federation.list(list_query(0, "", "batch=merge", 10, first.next_page_token), FORWARDED, 5.0)
    assert [a.id for a in rest.agents] == [i for i in created[::-1][3:] if i in created[1::2]]


def _agent(agent_id: str, created: float) -> Agent:
    return Agent(agent_id, "echo", "1.0.0", "", b"", {}, False, 0, created)


def _page(*agents: Agent, more: bool = False) -> Page:
    return Page(list(agents), "more" if more else "")


def _after(agent: Agent, query: ListQuery) -> str:
    return domain.encode_page_token(domain.PageCursor.of(agent.create_time, agent.id), query.flt)


Q3, Q5 = ListQuery(size=3), ListQuery(size=5)


def test_pages_interleave_newest_first_and_continue_after_the_last_taken() -> None:
    blue = _page(_agent("b3", 30.0), _agent("b2", 20.0), _agent("b1", 10.0))
    green = _page(_agent("g3", 25.0), _agent("g1", 5.0))
    merged = merge_pages([blue, green], Q3)
    assert [a.id for a in merged.agents] == ["b3", "g3", "b2"]
    assert merged.next_page_token == _after(_agent("b2", 20.0), Q3)  # b1 and g1 come on the next page


def test_the_last_page_has_no_token_unless_a_color_has_more() -> None:
    blue, green = _page(_agent("b1", 10.0)), _page(_agent("g1", 5.0))
    assert merge_pages([blue, green], Q5).next_page_token == ""
    # Everything fits, but green said it had more beyond its page: continue after the last one shown.
    more = merge_pages([blue, _page(_agent("g1", 5.0), more=True)], Q5)
    assert more.next_page_token == _after(_agent("g1", 5.0), Q5)
    assert merge_pages([_page(), _page()], Q5) == Page([])


def test_the_same_microsecond_orders_by_id() -> None:
    merged = merge_pages([_page(_agent("a", 1.0)), _page(_agent("c", 1.0), _agent("b", 1.0))], Q3)
    assert [a.id for a in merged.agents] == ["c", "b", "a"]
