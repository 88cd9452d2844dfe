"""The scheduler's servicer reads the call's origin from its metadata only when federation asks, and
checks what only the contract knows (the RunAgent view) before anything runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from services.common import errors
from services.scheduler.servicer import SchedulerServicer, _Origin


class Context:
    def __init__(self, metadata: Sequence[tuple[str, str]] | None = ()) -> None:
        self.metadata = metadata
        self.reads = 0

    def invocation_metadata(self) -> Sequence[tuple[str, str]] | None:
        self.reads += 1
        return self.metadata

    def time_remaining(self) -> float | None:
        return None


def _origin(context: Context) -> _Origin:
    return _Origin(context)  # type: ignore[arg-type]  # the two methods the servicer reads


def test_a_forwarded_call_is_recognised_by_its_header() -> None:
    assert _origin(Context((("x-agentfactory-forwarded-by", "scheduler-blue"),))).forwarded()
    assert not _origin(Context((("x-agentfactory-color", "green"),))).forwarded()
    assert not _origin(Context(None)).forwarded()


def test_the_metadata_is_read_only_when_asked() -> None:
    context = Context()
    origin = _origin(context)
    assert context.reads == 0
    origin.forwarded()
    assert context.reads == 1


async def test_an_unknown_run_agent_view_is_invalid_argument_before_anything_runs() -> None:
    class Nothing:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"federation.{name} was called")

    servicer = SchedulerServicer(Nothing())  # type: ignore[arg-type]  # must not be reached
    request = pb.RunAgentRequest(template_name="echo", view=7)  # type: ignore[arg-type]  # an unknown enum value
    with pytest.raises(errors.InvalidArgument, match="view 7 is not a RunAgentView") as err:
        async for _ in servicer.RunAgent(request, Context()):  # type: ignore[arg-type]
            pass
    assert err.value.field == "view"
