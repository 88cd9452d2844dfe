"""`afctl agents watch` and `afctl run` against the scheduler's real WatchAgent stream (SchedulerService with
its SQLite journal and a scripted executor): what they print is what the agent wrote, once, whatever the
scheduler's output cap and however the executor cut the output into events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from afctl.__main__ import WatchPrinter
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from services.scheduler import messages
from services.scheduler.domain import CreateSpec, RunFinished, RunOutcome
from services.scheduler.journal import Journal
from services.scheduler.ports import Accepted, Ended, ExecutorEvent, Output, RunSpec, Started
from services.scheduler.service import SchedulerService, ServiceSettings
from tests.unit.scheduler import doubles
from tests.unit.scheduler.test_service import ECHO, FAST, RETRY


def writes(*chunks: bytes, lose_first: bool = False) -> Callable[[RunSpec], AsyncIterator[ExecutorEvent]]:
    """A run that writes `chunks` and succeeds; with `lose_first`, the first run writes "partial\n" and its
    executor is lost (the agent is re-dispatched: PENDING, its output starts again)."""
    runs = []

    async def script(spec: RunSpec) -> AsyncIterator[ExecutorEvent]:
        runs.append(spec)
        if lose_first and len(runs) == 1:
            async for event in doubles.broken(spec):
                yield event
            return
        yield Accepted("ex-double")
        yield Started()
        for chunk in chunks:
            yield Output(chunk)
            await asyncio.sleep(0)
        yield RunFinished(RunOutcome.SUCCEEDED, exit_code=0, fuel_used=1)
        yield Ended("OK")

    return script


async def watched(tmp_path: Path, cap: int, *chunks: bytes, states: bool = True, lose_first: bool = False) -> None:
    """Create an agent whose run writes `chunks`, and print its watch from the start to the end."""
    journal = Journal.open(tmp_path / "data")
    executors = doubles.FakeExecutors({"ex-a": writes(*chunks, lose_first=lose_first)})
    settings = ServiceSettings(output_cap_bytes=cap, dispatch=FAST)
    svc = SchedulerService(journal, doubles.Templates(ECHO, RETRY), executors, settings)
    await svc.start()
    try:
        agent, _ = await svc.create(CreateSpec("retry" if lose_first else "echo"))
        printer = WatchPrinter(states=states)
        async for event in svc.watch(agent.id):  # subscribed before the run writes anything
            printer.event(sch_pb.WatchAgentResponse(**messages.event_fields(event)))
        printer.end_output()
    finally:
        await svc.stop(0)
        journal.close()


async def test_output_past_the_cap_is_printed_once_and_without_a_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The agent keeps 10 bytes (output_truncated); the output events carry all 16.
    await watched(tmp_path, 10, b"a" * 8, b"b" * 8)
    out, notices = capsys.readouterr()
    assert out.startswith("PENDING\nRUNNING\n" + "a" * 8 + "b" * 8 + "\nSUCCEEDED"), out
    assert out.count("a" * 8) == 1 and notices == ""


async def test_afctl_run_prints_output_past_the_cap_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await watched(tmp_path, 10, b"a" * 8, b"b" * 8, states=False)
    assert capsys.readouterr() == ("a" * 8 + "b" * 8, "")


async def test_a_character_split_across_output_events_is_printed_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The executor cuts stdout in fixed-size chunks (sandbox/state.py), wherever a character falls.
    text = "größe → 3 €\n".encode()
    await watched(tmp_path, 1024, text[:3], text[3:15], text[15:])
    out = capsys.readouterr().out
    assert "größe → 3 €\n" in out and "\ufffd" not in out, out


async def test_a_character_cut_by_the_end_of_the_output_is_one_replacement_character(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await watched(tmp_path, 1024, b"ok \xe2\x82", states=False)
    assert capsys.readouterr().out == "ok \ufffd"


async def test_afctl_run_says_a_run_that_starts_over_and_does_not_glue_its_output_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await watched(tmp_path, 1024, b"done\n", states=False, lose_first=True)
    out, notices = capsys.readouterr()
    assert out == "partial\ndone\n" and "starts over" in notices, (out, notices)
