"""What the scheduler needs from the outside world, as domain types: the agent journal, a template
resolver (the registry), executors, and the other colors' schedulers. Journal adapters: journal.py
(SQLite, embedded) and journal_pg.py (PostgreSQL, shared by replicas); clients.py and peers.py talk gRPC;
unit tests use in-process doubles."""

from __future__ import annotations

import builtins  # AgentJournal has a method named list: later annotations name the builtin explicitly
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.common.errors import Unavailable
from services.scheduler.domain import (
    Agent,
    CreateSpec,
    ListFilter,
    ListQuery,
    Page,
    PageCursor,
    RunFinished,
    TemplateInfo,
)


class AgentJournal(Protocol):
    """Where accepted agents live. Both adapters pass tests/integration/scheduler/test_journal_contract.py.
    Closing is the composition root's business (the SQLite journal closes synchronously)."""

    async def create(self, agent: Agent) -> tuple[Agent, bool]:
        """Journal a new agent, committed before this returns. If its request_id is taken: the existing
        agent and False (across every replica sharing the journal)."""
        ...

    async def update(self, agent: Agent) -> None:
        """Journal an agent's new state. KeyError if unknown; journal.LeaseLost if another replica took it
        over since this one read it (its fence is stale)."""
        ...

    async def get(self, agent_id: str) -> Agent | None: ...

    async def get_by_request_id(self, request_id: str) -> Agent | None: ...

    async def list(self, flt: ListFilter, after: PageCursor | None, limit: int) -> list[Agent]:
        """Newest first (creation time, then id), after `after`."""
        ...

    async def unfinished(self) -> Sequence[Agent]:
        """Every PENDING or RUNNING agent, oldest first."""
        ...

    async def count(self) -> int: ...

    async def take_over(self, limit: int = 500) -> builtins.list[Agent]:
        """Unfinished agents nobody looks after any more, now this replica's (each with a new fence)."""
        ...

    async def renew(self) -> int:
        """Keep this replica's claim on its unfinished agents; returns how many it holds."""
        ...

    async def request_cancel(self, agent_id: str, reason: str) -> bool:
        """Ask whichever replica runs this unfinished agent to cancel it; False if it is not unfinished
        (or, embedded, if no other process could be running it)."""
        ...

    async def cancel_requests(self) -> builtins.list[tuple[str, str]]:
        """(id, reason) of this replica's agents that another replica was asked to cancel."""
        ...


class TemplateResolver(Protocol):
    async def resolve(self, name: str, version: str, timeout: float) -> TemplateInfo:
        """The exact template for name@version ("" = latest). Raises NotFound, FailedPrecondition
        (deprecated) or Unavailable (registry unreachable)."""
        ...


@dataclass(frozen=True)
class RunSpec:
    agent_id: str
    template_name: str
    template_version: str
    input: bytes


@dataclass(frozen=True)
class Accepted:
    executor_id: str


@dataclass(frozen=True)
class Started:
    pass


@dataclass(frozen=True)
class Output:
    data: bytes


@dataclass(frozen=True)
class Log:
    level: str
    message: str


@dataclass(frozen=True)
class Ended:
    """Always the last item of `RunHandle.events()`: the call's final status."""

    code: str  # a gRPC status code name: "OK", "RESOURCE_EXHAUSTED", ...
    message: str = ""
    executor: str = ""  # the executor that answered, when it said so (a refusal's trailers)


ExecutorEvent = Accepted | Started | Output | Log | RunFinished | Ended


@dataclass(frozen=True)
class AgentChanged:
    agent: Agent


# What a watcher of an agent sees (WatchAgent, RunAgent): its state changes, its output and its logs.
WatchEvent = AgentChanged | Output | Log


class RunHandle(Protocol):
    def events(self) -> AsyncIterator[ExecutorEvent]:
        """The run's events, then exactly one Ended. Never raises for a failed call."""
        ...

    def cancel(self) -> None:
        """Cancel the call (the executor stops the sandbox); events() then ends with Ended("CANCELLED")."""
        ...


class Executors(Protocol):
    @property
    def addresses(self) -> Sequence[str]: ...

    def start(self, address: str, spec: RunSpec, timeout: float) -> RunHandle: ...

    async def close(self) -> None: ...


class PeerUnreachable(Unavailable):
    """Another color's scheduler could not answer a question about an agent (it may own it): any
    ending of the call but NOT_FOUND before its answer began. `code` is the call's status name."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}".rstrip(": "))
        self.code = code


class Peers(Protocol):
    """The other colors' schedulers of a blue/green pair, each asked on its own (`color`); the calls say
    that this scheduler forwarded them, so the answering one never forwards them again. When to ask
    them is services/scheduler/federation.py's business; peers.py is the gRPC adapter.

    A question (get, cancel, list_page, and watch until its first event) raises NotFound when that
    color does not have the agent and PeerUnreachable when it could not answer. A forwarded call
    (create, run, and the rest of a watch) ends with the owner's own error, whatever it is."""

    @property
    def colors(self) -> Sequence[str]: ...

    async def get(self, color: str, agent_id: str, timeout: float | None) -> Agent: ...

    async def cancel(self, color: str, agent_id: str, timeout: float | None) -> Agent: ...

    def watch(self, color: str, agent_id: str, timeout: float | None) -> AsyncIterator[WatchEvent]: ...

    async def list_page(self, color: str, query: ListQuery, timeout: float | None) -> Page: ...

    async def create(self, color: str, spec: CreateSpec, timeout: float | None) -> Agent: ...

    def run(self, color: str, spec: CreateSpec, timeout: float | None, result_only: bool) -> AsyncIterator[WatchEvent]:
        """RunAgent at the owner: its events, then its final status (an error unless the agent ran)."""
        ...

    async def close(self) -> None: ...
