"""The event loop every service runs on.

uvloop by default: gRPC's asyncio stack wakes the loop for every completion (a message sent or
received, a status), so the loop's own cost per callback is a visible share of each request's
CPU (perf/NOTES.md). `AF_EVENT_LOOP=asyncio` runs on the standard library's loop instead. Read from the
process entry's one `Env` snapshot (services/common/app.py), never from the environment again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from services.common.config import ConfigError, Env

LOOPS = ("uvloop", "asyncio")


def loop_factory(env: Env) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for AF_EVENT_LOOP (None: asyncio's default)."""
    choice = env.str("AF_EVENT_LOOP", "uvloop")
    if choice not in LOOPS:
        raise ConfigError(f"AF_EVENT_LOOP={choice[:40]!r}; expected one of {', '.join(LOOPS)}")
    if choice == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop
