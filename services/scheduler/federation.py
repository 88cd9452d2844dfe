"""Blue/green: every color's scheduler answers for every agent. The use cases as the servicer calls
them, over SchedulerService (this color's journal) and the Peers port (the other colors).

Each scheduler owns the agents it created. While traffic is split, a GetAgent, WatchAgent or
CancelAgent can reach the color that did not create the agent: it does not know the id, so it asks
the other colors one at a time and relays the first answer (NOT_FOUND only when every color said so,
UNAVAILABLE when one could not be asked: it may own the agent). A CreateAgent or RunAgent whose
request_id this color never saw first asks whether another color created it, and if one did the whole
call goes there, so a client retry on the other color gets its one agent. ListAgents lists every
color: the same page of each, merged. A call another color forwarded here is answered from this
color alone, so two schedulers never bounce a call between them.

With no peers (a single color, or a journal shared by every replica) each call is the service's own;
a RunAgent without a request_id never looks at peers at all (the hot path pays nothing for this).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from services.common.errors import NotFound, Unavailable
from services.common.logs import log_event
from services.scheduler import domain, metrics
from services.scheduler.domain import Agent, CreateSpec, ListQuery, Page, PageCursor
from services.scheduler.ports import Peers, PeerUnreachable, WatchEvent
from services.scheduler.service import Expired, SchedulerService

T = TypeVar("T")
log = logging.getLogger(__name__)


class Origin(Protocol):
    """Where a call came from, as far as federation cares. Asked only when a peer might be asked:
    most calls never need it (the servicer reads it from the call's metadata on demand)."""

    def forwarded(self) -> bool:
        """Whether another color's scheduler forwarded this call here."""
        ...


class Federation:
    def __init__(self, service: SchedulerService, peers: Peers | None = None) -> None:
        self.service = service
        self.peers = peers

    def _peers_for(self, origin: Origin) -> Peers | None:
        """The peers to ask: none for a call a peer already forwarded here (it is never forwarded twice)."""
        if self.peers is None or origin.forwarded():
            return None
        return self.peers

    # --- use cases -------------------------------------------------------------------------------

    async def create(self, spec: CreateSpec, origin: Origin, timeout: float | None) -> Agent:
        if spec.request_id and self.peers is not None:
            start = time.monotonic()
            owner = await self._request_owner(spec.request_id, origin, timeout)
            timeout = _left(timeout, start)
            if owner is not None:
                peers, color = owner
                metrics.PEER_CALLS.labels("CreateAgent", "ok").inc()  # forwarded: the owner answers, error or not
                return await peers.create(color, spec, timeout)
        agent, _ = await self.service.create(spec, timeout=timeout)
        return agent

    def run(
        self, spec: CreateSpec, origin: Origin, timeout: float | None, *, result_only: bool
    ) -> AsyncIterator[WatchEvent]:
        """RunAgent. Without a request_id (or without peers) this is the service's own stream, handed
        back as it is: no extra await or generator per call on the hot path."""
        if spec.request_id and self.peers is not None:
            return self._run_keyed(spec, origin, timeout, result_only)
        return self.service.run(spec, timeout, result_only=result_only)

    async def _run_keyed(
        self, spec: CreateSpec, origin: Origin, timeout: float | None, result_only: bool
    ) -> AsyncIterator[WatchEvent]:
        start = time.monotonic()
        owner = await self._request_owner(spec.request_id, origin, timeout)
        timeout = _left(timeout, start)
        if owner is None:
            events = self.service.run(spec, timeout, result_only=result_only)
        else:
            peers, color = owner
            metrics.PEER_CALLS.labels("RunAgent", "ok").inc()
            events = peers.run(color, spec, timeout, result_only)  # followed to the owner's final status
        async for event in events:
            yield event

    async def get(self, agent_id: str, origin: Origin, timeout: float | None) -> Agent:
        start = time.monotonic()
        try:
            return await self.service.get(agent_id)
        except Expired:
            raise  # this color created it and retention deleted it: no other color has it
        except NotFound:
            if (peers := self._peers_for(origin)) is None:
                raise
        left = _left(timeout, start)
        return await self._first(peers, "GetAgent", agent_id, lambda color: peers.get(color, agent_id, left))

    async def cancel(self, agent_id: str, origin: Origin, timeout: float | None) -> Agent:
        start = time.monotonic()
        try:
            return await self.service.cancel(agent_id)
        except NotFound:
            if (peers := self._peers_for(origin)) is None:
                raise
        left = _left(timeout, start)
        return await self._first(peers, "CancelAgent", agent_id, lambda color: peers.cancel(color, agent_id, left))

    async def watch(self, agent_id: str, origin: Origin, timeout: float | None) -> AsyncIterator[WatchEvent]:
        start = time.monotonic()
        try:
            async for event in self.service.watch(agent_id):
                yield event
            return
        except NotFound:  # raised before the first event: nothing was sent yet
            if (peers := self._peers_for(origin)) is None:
                raise
        left = _left(timeout, start)

        async def ask(color: str) -> tuple[AsyncIterator[WatchEvent], WatchEvent]:
            # The owner is found by its first event: a watch always starts with the agent as it is now.
            events = aiter(peers.watch(color, agent_id, left))
            first = await anext(events, None)
            if first is None:  # a broken peer
                raise Unavailable(f"scheduler {color} ended a watch of {agent_id!r} without a message")
            return events, first

        events, first = await self._first(peers, "WatchAgent", agent_id, ask)
        yield first
        async for event in events:  # the owner's ending, error or not, is the caller's
            yield event

    async def list(self, query: ListQuery, origin: Origin, timeout: float | None) -> Page:
        start = time.monotonic()
        local = await self.service.list(query)
        if (peers := self._peers_for(origin)) is None:
            return local
        timeout = _left(timeout, start)
        if query.request_id:  # the one agent of this key, wherever it is
            if local.agents:
                return local
            async for _, page in self._list_each(peers, query, timeout):
                if page.agents:
                    return page
            return Page([])
        # Every color's agents, one page: each color lists from the same cursor, the pages merge.
        return merge_pages([local, *[page async for _, page in self._list_each(peers, query, timeout)]], query)

    # --- asking the other colors -----------------------------------------------------------------

    async def _request_owner(self, request_id: str, origin: Origin, timeout: float | None) -> tuple[Peers, str] | None:
        """The peers and the other color that already created the agent of this request_id, if any."""
        if (peers := self._peers_for(origin)) is None or await self.service.knows_request(request_id):
            return None
        async for color, page in self._list_each(peers, ListQuery(request_id=request_id, size=1), timeout):
            if page.agents:
                return peers, color
        return None

    async def _first(self, peers: Peers, method: str, agent_id: str, ask: Callable[[str], Awaitable[T]]) -> T:
        """The first color's answer that is not NOT_FOUND. NotFound when every color says so;
        Unavailable when some color could not be asked (it may own the agent)."""
        unreachable = []
        for color in peers.colors:
            try:
                answer = await ask(color)
            except PeerUnreachable as exc:
                metrics.PEER_CALLS.labels(method, "unreachable").inc()
                unreachable.append(f"{color}: {exc.message}")
                continue
            except NotFound:
                metrics.PEER_CALLS.labels(method, "not_found").inc()
                continue
            metrics.PEER_CALLS.labels(method, "ok").inc()
            return answer
        if unreachable:
            raise Unavailable(
                f"agent {agent_id!r} is not on this scheduler and the other color could not be asked "
                f"({'; '.join(unreachable)}); retry"
            )
        raise NotFound(f"agent {agent_id!r} does not exist")

    async def _list_each(
        self, peers: Peers, query: ListQuery, timeout: float | None
    ) -> AsyncIterator[tuple[str, Page]]:
        """(color, page) of the same listing at each other color, in order. A color that cannot be
        asked is left out (counted as unreachable): lookups and listings do not depend on every
        color being up (creating after a skipped lookup risks a duplicate; refusing would not)."""
        for color in peers.colors:
            try:
                page = await peers.list_page(color, query, timeout)
            except (PeerUnreachable, NotFound) as exc:  # a listing has no NOT_FOUND to give: a broken peer
                code = exc.code if isinstance(exc, PeerUnreachable) else exc.code_name
                metrics.PEER_CALLS.labels("ListAgents", "unreachable").inc()
                log_event(log, "peer left out of ListAgents", logging.WARNING, color=color, code=code,
                          request_id=query.request_id)  # fmt: skip
                continue
            metrics.PEER_CALLS.labels("ListAgents", "ok" if page.agents else "not_found").inc()
            yield color, page


def merge_pages(pages: Sequence[Page], query: ListQuery) -> Page:
    """One page, newest first, out of the same page of each color's listing. Every color continues
    from the same cursor (creation time and id of the page's last agent), so nothing is skipped or
    repeated however the colors' agents interleave."""
    merged = sorted((a for page in pages for a in page.agents), key=_cursor, reverse=True)
    taken = merged[: query.size]
    more = len(merged) > query.size or any(page.next_page_token for page in pages)
    return Page(taken, domain.encode_page_token(_cursor(taken[-1]), query.flt) if more and taken else "")


def _cursor(agent: Agent) -> PageCursor:
    return PageCursor.of(agent.create_time, agent.id)


def _left(timeout: float | None, start: float) -> float | None:
    """What remains at this instant of the caller's `timeout` (None: no deadline) given at `start`
    (time.monotonic()): a peer call made after a local lookup gets only the rest, as a downstream
    call should."""
    return None if timeout is None else max(timeout - (time.monotonic() - start), 0.0)
