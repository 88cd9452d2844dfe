"""The agent tools (docs/tools-abi.md): what each host function under the import module `agentfactory`
does. Names, signatures and dispatch are in abi.py.

Each function bounds-checks every guest pointer and length (AF_ERR_BOUNDS), enforces its size caps
(AF_ERR_TOO_LARGE) and answers with a code and a short detail for the ToolCall event; it never raises
(abi.py wraps it once more). Each does bounded work; `http_get`, the one that can wait, checks the run's
deadline and cancel flag every slice (http_fetch.py).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import wasmtime

from services.executor import guest
from services.executor.kvstore import MAX_KEY_BYTES, MAX_VALUE_BYTES, KvFull, KvStore
from services.executor.sandbox.codes import (
    AF_ERR_BOUNDS,
    AF_ERR_DENIED,
    AF_ERR_INVALID,
    AF_ERR_IO,
    AF_ERR_NOT_FOUND,
    AF_ERR_TOO_LARGE,
    AF_OK,
)
from services.executor.sandbox.hostcall import stop_now
from services.executor.sandbox.http_fetch import HTTP_MAX_SECONDS, fetch
from services.executor.sandbox.state import RunState

MAX_URL_BYTES = 2048
MAX_RANDOM_BYTES = 64 * 1024
MAX_LOG_MESSAGE = 4096
LOG_LEVELS = {0: "info", 1: "warn", 2: "error"}


@dataclass
class ToolContext:
    """What the tools of one run may touch."""

    agent_id: str
    kv: KvStore | None
    http_allowed: Callable[[str], bool]


class AgentTools:
    """The tool functions of one run; abi.TOOL_FUNCTIONS maps each import to one of these methods."""

    def __init__(self, context: ToolContext) -> None:
        self.ctx = context

    # -- log --
    def log(self, run: RunState, caller: wasmtime.Caller, level: int, ptr: int, length: int) -> tuple[int, bool, str]:
        if (length & guest.U32) > MAX_LOG_MESSAGE:
            return AF_ERR_TOO_LARGE, True, f"log: message longer than {MAX_LOG_MESSAGE} bytes"
        data = guest.read(caller, ptr, length)
        if data is None:
            return AF_ERR_BOUNDS, True, "log: message out of bounds"
        if level not in LOG_LEVELS:
            return AF_ERR_INVALID, True, f"log: bad level {level}"
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return AF_ERR_INVALID, True, "log: message is not UTF-8"
        run.add_log(LOG_LEVELS[level], data)
        return AF_OK, True, f"log {LOG_LEVELS[level]}"

    # -- kv --
    def _key(self, caller: wasmtime.Caller, ptr: int, length: int) -> bytes | int:
        if (length & guest.U32) > MAX_KEY_BYTES:
            return AF_ERR_TOO_LARGE
        key = guest.read(caller, ptr, length)
        return AF_ERR_BOUNDS if key is None else key

    def kv_get(
        self, run: RunState, caller: wasmtime.Caller, kptr: int, klen: int, buf: int, cap: int
    ) -> tuple[int, bool, str]:
        if self.ctx.kv is None or not self.ctx.agent_id:
            return AF_ERR_DENIED, False, "kv_get: the run has no agent id to scope the store"
        key = self._key(caller, kptr, klen)
        if isinstance(key, int):
            return key, True, "kv_get: bad key"
        if not guest.write(caller, buf, cap, b""):
            return AF_ERR_BOUNDS, True, f"kv_get {_show(key)}: buffer out of bounds"
        value = self.ctx.kv.get(self.ctx.agent_id, key)
        if value is None:
            return AF_ERR_NOT_FOUND, True, f"kv_get {_show(key)}: not found"
        guest.write(caller, buf, cap, value)
        return len(value), True, f"kv_get {_show(key)}: {len(value)} bytes"

    def kv_put(
        self, run: RunState, caller: wasmtime.Caller, kptr: int, klen: int, vptr: int, vlen: int
    ) -> tuple[int, bool, str]:
        if self.ctx.kv is None or not self.ctx.agent_id:
            return AF_ERR_DENIED, False, "kv_put: the run has no agent id to scope the store"
        key = self._key(caller, kptr, klen)
        if isinstance(key, int):
            return key, True, "kv_put: bad key"
        if (vlen & guest.U32) > MAX_VALUE_BYTES:
            return AF_ERR_TOO_LARGE, True, f"kv_put {_show(key)}: value longer than {MAX_VALUE_BYTES} bytes"
        value = guest.read(caller, vptr, vlen)
        if value is None:
            return AF_ERR_BOUNDS, True, f"kv_put {_show(key)}: value out of bounds"
        try:
            self.ctx.kv.put(self.ctx.agent_id, key, value)
        except KvFull:
            return AF_ERR_TOO_LARGE, True, f"kv_put {_show(key)}: the agent's store is full"
        return AF_OK, True, f"kv_put {_show(key)}: {len(value)} bytes"

    # -- clock, random --
    def clock_now_ms(self, run: RunState, caller: wasmtime.Caller) -> tuple[int, bool, str]:
        return int(time.time() * 1000), True, "clock_now_ms"

    def random_fill(self, run: RunState, caller: wasmtime.Caller, ptr: int, length: int) -> tuple[int, bool, str]:
        if (length & guest.U32) > MAX_RANDOM_BYTES:
            return AF_ERR_TOO_LARGE, True, f"random_fill: more than {MAX_RANDOM_BYTES} bytes"
        if not guest.write(caller, ptr, length, secrets.token_bytes(length & guest.U32)):
            return AF_ERR_BOUNDS, True, "random_fill: buffer out of bounds"
        return AF_OK, True, f"random_fill {length} bytes"

    # -- http_get --
    def http_get(
        self, run: RunState, caller: wasmtime.Caller, uptr: int, ulen: int, buf: int, cap: int
    ) -> tuple[int, bool, str]:
        if (ulen & guest.U32) > MAX_URL_BYTES:
            return AF_ERR_TOO_LARGE, True, f"http_get: URL longer than {MAX_URL_BYTES} bytes"
        raw = guest.read(caller, uptr, ulen)
        if raw is None:
            return AF_ERR_BOUNDS, True, "http_get: URL out of bounds"
        if not guest.write(caller, buf, cap, b""):
            return AF_ERR_BOUNDS, True, "http_get: buffer out of bounds"
        try:
            url = raw.decode("ascii")
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except (UnicodeDecodeError, ValueError):
            return AF_ERR_INVALID, True, "http_get: malformed URL"
        if parts.scheme != "http" or not host or port is None or parts.username or parts.password:
            return AF_ERR_INVALID, True, f"http_get {url[:200]}: only http://host:port/... URLs are allowed"
        host_port = f"{host}:{port}"
        if not self.ctx.http_allowed(host_port):
            return AF_ERR_DENIED, False, f"http_get {url[:200]}: {host_port} is not allowlisted"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        deadline = min(run.deadline, time.monotonic() + HTTP_MAX_SECONDS)
        code, body, why = fetch(host, port, path, deadline, run)
        if run.cancelled or time.monotonic() >= run.deadline:
            # The run's time ran out inside this blocking call: end the run now, as the epoch would have.
            run.deadline_hit = not run.cancelled
            stop_now(caller, run)
            return AF_ERR_IO, True, f"http_get {url[:200]}: {why}"
        if code != AF_OK:
            return code, True, f"http_get {url[:200]}: {why}"
        guest.write(caller, buf, cap, body)
        return len(body), True, f"http_get {url[:200]}: {why}, {len(body)} bytes"


def _show(key: bytes) -> str:
    return repr(key[:64].decode("utf-8", "replace"))
