"""The process entry every service's `__main__` goes through: `run_service(Service(...))`.

1. The environment is read once, into one `Env` snapshot, by the service's settings class and by the
   event loop choice. A bad setting (a `ConfigError`, or one of the service's `setting_errors`, such as a
   policy file that does not parse) is one line on stderr and exit code 2, never a
   traceback, whichever service it is.
2. Logging is set up, once; the GIL switch interval applied; the process's `Telemetry` built, once.
3. The directory the service's embedded stores need to themselves (`own_dir`, e.g. AF_DATA_DIR) is
   claimed (services/common/dir_claim.py) for the process's life; held by another live process, that is
   one line on stderr naming its pid, and exit 1.
4. On the configured loop, the service's `build(settings, telemetry)` wires its stores, clients and
   servicers into an `App`; a `CannotStart` from it is one line on stderr (and a log line) and exit 1.
5. `lifecycle.serve` serves the App and drains and closes it in its fixed order; its result is the
   exit code.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from services.common import dir_claim, event_loop
from services.common.config import ConfigError, Env
from services.common.lifecycle import EXIT_FAILED, App, serve
from services.common.logs import log_event, setup_logging
from services.common.server import ServerSettings
from services.common.telemetry import Telemetry

log = logging.getLogger(__name__)

EXIT_BAD_SETTING = 2


class CannotStart(Exception):
    """The service cannot start with these settings and this environment (a store it cannot open, keys
    it must not use): exit code 1 with this message, not a traceback."""


class HasServer(Protocol):
    """A service's settings: its own, plus what every server needs."""

    @property
    def server(self) -> ServerSettings: ...


S = TypeVar("S", bound=HasServer)


@dataclass(frozen=True)
class Service(Generic[S]):
    """A service as the process entry knows it."""

    name: str  # "registry": the stderr prefix, the RPC metrics' service label, the traces' service.name
    settings: Callable[[Env], S]  # parses the snapshot; raises ConfigError on a bad setting
    build: Callable[[S, Telemetry], Awaitable[App]]
    # The service's own errors that mean a bad setting too (a policy file that does not parse).
    setting_errors: tuple[type[Exception], ...] = ()
    # The directory no other process may use while this one runs (its embedded stores), or None.
    own_dir: Callable[[S], Path | None] | None = None


def run_service(service: Service[S], environ: Mapping[str, str] | None = None) -> int:
    """Configure `service` from the environment (or `environ`), then build and serve it; the exit code."""
    env = Env(environ)
    bad_setting: tuple[type[Exception], ...] = (ConfigError, *service.setting_errors)
    try:
        settings = service.settings(env)
        loop_factory = event_loop.loop_factory(env)
    except bad_setting as exc:
        print(f"{service.name}: configuration error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_BAD_SETTING
    server = settings.server
    setup_logging(server.service_id, server.log_level)
    if server.switch_interval_ms > 0:
        sys.setswitchinterval(server.switch_interval_ms / 1000)
    telemetry = Telemetry.start(server.service_id, service.name, server.otlp_endpoint)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_build_and_serve(service, settings, telemetry))


async def _build_and_serve(service: Service[S], settings: S, telemetry: Telemetry) -> int:
    claimed: dir_claim.DirClaim | None = None
    try:
        try:
            claimed = _claim_own_dir(service, settings)
            app = await service.build(settings, telemetry)
        except CannotStart as exc:
            message = " ".join(str(exc).split())
            log_event(log, "cannot start", logging.CRITICAL, error=message)
            print(f"{service.name}: cannot start: {message}", file=sys.stderr)
            telemetry.shutdown()
            return EXIT_FAILED
        return await serve(app, settings.server, telemetry, service_name=service.name)
    finally:
        if claimed is not None:
            claimed.release()


def _claim_own_dir(service: Service[S], settings: S) -> dir_claim.DirClaim | None:
    directory = service.own_dir(settings) if service.own_dir is not None else None
    if directory is None:
        return None
    try:
        return dir_claim.claim(directory)
    except dir_claim.DirInUse as exc:
        raise CannotStart(
            f"{exc}; each {service.name} process needs a data directory of its own (AF_DATA_DIR)"
        ) from None
    except OSError as exc:  # not creatable, not writable, a file where the directory goes
        raise CannotStart(f"cannot use {directory} as the data directory: {exc.strerror}") from None
