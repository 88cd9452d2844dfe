"""How every service process lives, from listening to exit, in one fixed order.

A service's `build(settings, telemetry)` returns an `App`; `serve()` then
  1. starts the metrics endpoint and the gRPC server, health NOT_SERVING;
  2. awaits `App.ready` (in a task, so SIGTERM is heard meanwhile) and reports SERVING when it says so;
  3. starts `App.background`, and waits for SIGTERM or SIGINT.
On the signal it drains and closes, always in this order:
  1. health NOT_SERVING for every name, so the mesh stops routing here;
  2. the server stops accepting calls and gives those in flight `grace_seconds`;
  3. `App.stopping` is set (a loop waiting on it returns) and the background tasks still running (and a
     `ready` still waiting) are cancelled;
  4. `App.close`, in its order (clients, dispatchers, stores: whatever the service lists), each one even
     when an earlier one failed;
  5. telemetry flushes the spans it still holds.
Nothing here runs per request.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.common.logs import log_event
from services.common.metrics import start_metrics_server
from services.common.server import Listening, Register, ServerSettings, open_server
from services.common.telemetry import Telemetry

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1

Close = Callable[[], Awaitable[None] | None]
"""Releases one thing (a channel, a store, a pool); may be sync or async."""


@dataclass
class App:
    """What a service hands the lifecycle: everything `serve()` needs, nothing it has to know about."""

    # Each adds its servicers to the server and returns their full names (health and reflection).
    servicers: Sequence[Register]
    # Awaited once the server listens; SERVING when it returns True. None: SERVING at once. False keeps
    # the service NOT_SERVING (it still answers, e.g. reads, but attracts no traffic).
    ready: Callable[[], Awaitable[bool]] | None = None
    # Started after `ready` returned, cancelled on shutdown (after `stopping` is set).
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
    # Run in this order after the server stopped and the background tasks ended.
    close: Sequence[Close] = ()
    # Services reflection describes besides this one's (the gateway's reflection upstream).
    reflect_also: Sequence[str] = ()
    # Set when shutdown reaches the background tasks: loops that wait on an event end on it cleanly.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


async def serve(app: App, settings: ServerSettings, telemetry: Telemetry, *, service_name: str) -> int:
    """Serve `app` until SIGTERM/SIGINT (or until its `ready` fails), then drain and close; the exit code."""
    start_metrics_server(settings.metrics_addr)
    listening = await open_server(
        settings, telemetry, app.servicers, service_name=service_name, reflect_also=app.reflect_also
    )
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    background: list[asyncio.Task[None]] = []
    failed: list[BaseException] = []

    def started(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.critical("could not become ready", exc_info=exc)
            failed.append(exc)
            signalled.set()  # a service that cannot become ready shuts down the same way, and exits 1

    starting = asyncio.create_task(_start(app, listening, background), name=f"{service_name}-start")
    starting.add_done_callback(started)
    await signalled.wait()
    await shut_down(app, listening, settings.grace_seconds, [starting, *background], telemetry)
    return EXIT_FAILED if failed else EXIT_OK


async def _start(app: App, listening: Listening, background: list[asyncio.Task[None]]) -> None:
    if app.ready is None or await app.ready():
        await listening.readiness.set_serving()
    for job in app.background:
        task = asyncio.create_task(job(), name=getattr(job, "__name__", "background"))
        task.add_done_callback(_log_failure)
        background.append(task)


async def shut_down(
    app: App, listening: Listening, grace: float, tasks: Sequence[asyncio.Task[None]], telemetry: Telemetry
) -> None:
    """The one shutdown order (the module's docstring says why each step comes where it does)."""
    log.info("draining", extra={"fields": {"grace_seconds": grace}})
    await listening.health.enter_graceful_shutdown()  # 1. every name NOT_SERVING, and it stays so
    await listening.server.stop(grace)  # 2. no new calls; those in flight get the grace
    app.stopping.set()  # 3. background work ends: loops waiting on `stopping` return on their own...
    await asyncio.sleep(0)
    for task in tasks:  # ...and what still runs is cancelled
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for close in app.close:  # 4. what the service opened, in its order
        try:
            result = close()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # the next ones (and the telemetry flush) must still run
            log_event(log, "close failed", logging.ERROR, step=getattr(close, "__qualname__", repr(close)),
                      error=repr(exc))  # fmt: skip
    telemetry.shutdown()  # 5. the spans of all the above
    log.info("stopped")


def _log_failure(task: asyncio.Task[None]) -> None:
    """A background task that dies says so (its service goes on without it, as before the kit)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background task failed", exc_info=exc, extra={"fields": {"task": task.get_name()}})
