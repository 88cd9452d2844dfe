"""In-process stand-ins for the scheduler's ports: a template table and scripted executors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from services.common.errors import NotFound
from services.scheduler.domain import RunFinished, RunOutcome, TemplateInfo
from services.scheduler.ports import Accepted, Ended, ExecutorEvent, Output, RunSpec, Started

Script = Callable[[RunSpec], AsyncIterator[ExecutorEvent]]


class Templates:
    def __init__(self, *templates: TemplateInfo) -> None:
        self.by_name = {t.name: t for t in templates}
        self.calls = 0

    async def resolve(self, name: str, version: str, timeout: float) -> TemplateInfo:
        self.calls += 1
        if name not in self.by_name:
            raise NotFound(f"template {name}@{version or 'latest'} is not published")
        return self.by_name[name]


async def succeed(spec: RunSpec, output: bytes | None = None) -> AsyncIterator[ExecutorEvent]:
    yield Accepted("ex-double")
    yield Started()
    yield Output(output if output is not None else spec.input.upper())
    yield RunFinished(RunOutcome.SUCCEEDED, exit_code=0, fuel_used=123)
    yield Ended("OK")


async def full(spec: RunSpec) -> AsyncIterator[ExecutorEvent]:
    yield Ended("RESOURCE_EXHAUSTED", "all 2 workers are busy")


async def unreachable(spec: RunSpec) -> AsyncIterator[ExecutorEvent]:
    yield Ended("UNAVAILABLE", "connection refused")


async def forever(spec: RunSpec) -> AsyncIterator[ExecutorEvent]:
    yield Accepted("ex-double")
    yield Started()
    yield Output(b"working...")
    await asyncio.Event().wait()
    yield Ended("OK")  # never reached


async def broken(spec: RunSpec) -> AsyncIterator[ExecutorEvent]:
    yield Accepted("ex-double")
    yield Started()
    yield Output(b"partial")
    yield Ended("UNAVAILABLE", "connection reset by peer")


async def unverifiable(spec: RunSpec) -> AsyncIterator[ExecutorEvent]:
    yield Ended("FAILED_PRECONDITION", "manifest signature does not verify with key version 1")


class FakeRun:
    def __init__(self, events: AsyncIterator[ExecutorEvent], timeout: float) -> None:
        self._events = events
        self._timeout = timeout
        self._cancel = asyncio.Event()

    def cancel(self) -> None:
        self._cancel.set()

    async def events(self) -> AsyncIterator[ExecutorEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        it = aiter(self._events)
        while True:
            nxt = asyncio.ensure_future(anext(it))
            cancel = asyncio.ensure_future(self._cancel.wait())
            done, _ = await asyncio.wait({nxt, cancel}, timeout=max(deadline - loop.time(), 0),
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            cancel.cancel()
            if nxt not in done:
                nxt.cancel()
                yield Ended("CANCELLED" if cancel in done else "DEADLINE_EXCEEDED", "stopped by the double")
                return
            try:
                event = nxt.result()
            except StopAsyncIteration:
                return
            yield event
            if isinstance(event, Ended):
                return


@dataclass
class FakeExecutors:
    """Each address runs its script; `calls` records (address, agent id, timeout) per call."""

    scripts: dict[str, Script]
    calls: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def addresses(self) -> Sequence[str]:
        return list(self.scripts)

    def start(self, address: str, spec: RunSpec, timeout: float) -> FakeRun:
        self.calls.append((address, spec.agent_id, timeout))
        return FakeRun(self.scripts[address](spec), timeout)

    async def close(self) -> None:
        pass
