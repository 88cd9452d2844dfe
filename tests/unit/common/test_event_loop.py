"""AF_EVENT_LOOP picks the loop a service runs on: uvloop unless told asyncio; anything else fails
at start-up naming the variable."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from services.common import event_loop
from services.common.config import ConfigError, Env


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_uvloop_by_default() -> None:
    assert event_loop.run(_loop_type(), Env({})) is uvloop.Loop


def test_asyncio_when_asked() -> None:
    loop_type = event_loop.run(_loop_type(), Env({"AF_EVENT_LOOP": "asyncio"}))
    assert issubclass(loop_type, asyncio.BaseEventLoop) and loop_type is not uvloop.Loop


def test_an_unknown_loop_is_refused_and_the_coroutine_closed() -> None:
    main = _loop_type()
    with pytest.raises(ConfigError, match="AF_EVENT_LOOP='trio'"):
        event_loop.run(main, Env({"AF_EVENT_LOOP": "trio"}))
    assert main.cr_frame is None  # closed, so no "never awaited" warning
