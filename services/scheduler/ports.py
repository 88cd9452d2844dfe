"""What the scheduler needs from the outside world, as domain types: a template resolver (the registry)
and executors. Adapters (clients.py) implement these over gRPC; unit tests use in-process doubles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.scheduler.domain import RunFinished, TemplateInfo


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


ExecutorEvent = Accepted | Started | Output | Log | RunFinished | Ended


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
