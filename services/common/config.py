"""Settings come from environment variables, read once at each service's composition root.

Nothing else reads `os.environ`. Helpers here parse and validate so a bad value fails at start-up
with a message naming the variable.
"""

from __future__ import annotations

import builtins  # Env has methods named str and list: annotations after them name the builtins explicitly
import os
from collections.abc import Mapping
from pathlib import Path


class ConfigError(ValueError):
    """A setting is missing or malformed."""


class Env:
    """Typed access to a snapshot of the environment."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ if environ is None else environ)

    def str(self, name: str, default: str | None = None) -> str:
        value = self._env.get(name)
        if value is None or value == "":
            if default is None:
                raise ConfigError(f"environment variable {name} is required")
            return default
        return value

    def optional(self, name: builtins.str) -> builtins.str | None:
        value = self._env.get(name)
        return value if value else None

    def int(self, name: builtins.str, default: int) -> int:
        raw = self._env.get(name)
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not an integer") from exc

    def float(self, name: builtins.str, default: float) -> float:
        raw = self._env.get(name)
        if not raw:
            return default
        try:
            return float(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not a number") from exc

    def bool(self, name: builtins.str, default: bool) -> bool:
        raw = self._env.get(name)
        if not raw:
            return default
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false)")

    def list(
        self, name: builtins.str, default: builtins.list[builtins.str] | None = None
    ) -> builtins.list[builtins.str]:
        raw = self._env.get(name)
        if not raw:
            return list(default or [])
        return [item.strip() for item in raw.split(",") if item.strip()]

    def path(self, name: builtins.str, default: builtins.str) -> Path:
        return Path(self.str(name, default))


def loopback_addr(value: str, name: str) -> str:
    """Apps listen on loopback only: the sidecar is the only way in."""
    host, _, port = value.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "[::1]") or not port.isdigit():
        raise ConfigError(f"{name}={value!r} must be a loopback host:port (the sidecar fronts the app)")
    return value
