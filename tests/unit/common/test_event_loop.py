"""AF_EVENT_LOOP picks the loop a service runs on: uvloop unless told asyncio; anything else fails
at start-up naming the variable."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from services.common import event_loop
from services.common.config import ConfigError, Env


def test_uvloop_by_default() -> None:
    assert event_loop.loop_factory(Env({})) is uvloop.new_event_loop


def test_asyncio_when_asked() -> None:
    assert event_loop.loop_factory(Env({"AF_EVENT_LOOP": "asyncio"})) is None  # asyncio.Runner's default
    with asyncio.Runner(loop_factory=event_loop.loop_factory(Env({"AF_EVENT_LOOP": "asyncio"}))) as runner:
        assert not isinstance(runner.get_loop(), uvloop.Loop)


def test_an_unknown_loop_is_refused_naming_the_variable_without_repeating_a_long_value() -> None:
    with pytest.raises(ConfigError, match="AF_EVENT_LOOP='trio'"):
        event_loop.loop_factory(Env({"AF_EVENT_LOOP": "trio"}))
    with pytest.raises(ConfigError) as refused:
        event_loop.loop_factory(Env({"AF_EVENT_LOOP": "x" * 10_000}))
    assert len(str(refused.value)) < 200
