"""The process entry every service's `__main__` goes through.

The environment is read once, into one `Env` snapshot that configures both the service and its event
loop. A bad setting (a `ConfigError`, or one of the service's own setting errors, such as a policy file
that does not parse) is one line on stderr and exit code 2, never a traceback, whichever service it is.
Then the service's coroutine runs on the configured loop, and what it returns is the exit code (None: 0).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from services.common import event_loop
from services.common.config import ConfigError, Env

S = TypeVar("S")

EXIT_BAD_SETTING = 2


def run_service(
    name: str,
    configure: Callable[[Env], S],
    run: Callable[[S], Coroutine[Any, Any, int | None]],
    *,
    setting_errors: tuple[type[Exception], ...] = (),
    environ: Mapping[str, str] | None = None,
) -> int:
    """Configure `name` from the environment (or `environ`), then run it; the process's exit code."""
    env = Env(environ)
    bad_setting: tuple[type[Exception], ...] = (ConfigError, *setting_errors)
    try:
        settings = configure(env)
        loop_factory = event_loop.loop_factory(env)
    except bad_setting as exc:
        print(f"{name}: configuration error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_BAD_SETTING
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(run(settings)) or 0
