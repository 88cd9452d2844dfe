"""The agent tools (docs/tools-abi.md): host functions under the import module `agentfactory`.

Each function bounds-checks every guest pointer and length (AF_ERR_BOUNDS), enforces its size caps
(AF_ERR_TOO_LARGE) and answers with a code; it never raises (sandbox.py wraps it once more). Every call
is reported as a ToolCall event with a short detail. `http_get` is a blocking host call that epoch
interruption cannot stop, so it carries its own deadline: the run's remaining wall-clock time, checked
between socket operations of at most one slice, together with the run's cancel flag.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import wasmtime

from services.common.telemetry import span
from services.executor import guest
from services.executor.kvstore import MAX_KEY_BYTES, MAX_VALUE_BYTES, KvFull, KvStore
from services.executor.sandbox import RunState, ToolHost, stop_now

AF_OK = 0
AF_ERR_NOT_FOUND = -1
AF_ERR_DENIED = -2
AF_ERR_BOUNDS = -3
AF_ERR_TOO_LARGE = -4
AF_ERR_IO = -5
AF_ERR_INVALID = -6

MAX_URL_BYTES = 2048
MAX_RANDOM_BYTES = 64 * 1024
MAX_LOG_MESSAGE = 4096
HTTP_MAX_BODY = 1024 * 1024
HTTP_MAX_HEADER = 16 * 1024
HTTP_MAX_SECONDS = 10.0  # even a run with a long deadline waits at most this long for one fetch
HTTP_SLICE_SECONDS = 0.02  # socket operations are sliced so a cancel is seen within about one tick
LOG_LEVELS = {0: "info", 1: "warn", 2: "error"}


@dataclass
class ToolContext:
    """What the tools of one run may touch."""

    agent_id: str
    kv: KvStore | None
    http_allowed: Callable[[str], bool]


class AgentTools(ToolHost):
    def __init__(self, context: ToolContext) -> None:
        self.ctx = context

    def call(self, run: RunState, caller: wasmtime.Caller, name: str, args: tuple[int, ...]) -> tuple[int, bool, str]:
        with span("tool_call", tool=name):
            return getattr(self, f"_{name}")(run, caller, *args)

    # -- log --
    def _log(self, run: RunState, caller: wasmtime.Caller, level: int, ptr: int, length: int) -> tuple[int, bool, str]:
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

    def _kv_get(
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

    def _kv_put(
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
    def _clock_now_ms(self, run: RunState, caller: wasmtime.Caller) -> tuple[int, bool, str]:
        return int(time.time() * 1000), True, "clock_now_ms"

    def _random_fill(self, run: RunState, caller: wasmtime.Caller, ptr: int, length: int) -> tuple[int, bool, str]:
        if (length & guest.U32) > MAX_RANDOM_BYTES:
            return AF_ERR_TOO_LARGE, True, f"random_fill: more than {MAX_RANDOM_BYTES} bytes"
        if not guest.write(caller, ptr, length, secrets.token_bytes(length & guest.U32)):
            return AF_ERR_BOUNDS, True, "random_fill: buffer out of bounds"
        return AF_OK, True, f"random_fill {length} bytes"

    # -- http_get --
    def _http_get(
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
        code, body, why = _fetch(host, port, path, deadline, run)
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


def _fetch(host: str, port: int, path: str, deadline: float, run: RunState) -> tuple[int, bytes, str]:
    """HTTP/1.0 GET with a hard deadline, a body cap and cancel checks; (code, body, description)."""

    def remaining() -> float:
        return deadline - time.monotonic()

    if remaining() <= 0:
        return AF_ERR_IO, b"", "no time left before the run's deadline"
    try:
        sock = socket.create_connection((host, port), timeout=max(min(remaining(), HTTP_MAX_SECONDS), 0.001))
    except OSError as exc:
        return AF_ERR_IO, b"", f"connect failed ({type(exc).__name__})"
    with sock:
        try:
            request = (
                f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\nUser-Agent: agentfactory\r\n\r\n"
            )
            sock.settimeout(max(min(remaining(), HTTP_SLICE_SECONDS), 0.001))
            sock.sendall(request.encode("latin-1"))
            data = bytearray()
            limit = HTTP_MAX_HEADER + HTTP_MAX_BODY
            while True:
                if run.cancelled:
                    return AF_ERR_IO, b"", "cancelled"
                left = remaining()
                if left <= 0:
                    return AF_ERR_IO, b"", "timed out (the run's deadline)"
                sock.settimeout(min(left, HTTP_SLICE_SECONDS))
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                data += chunk
                if len(data) > limit:
                    return AF_ERR_TOO_LARGE, b"", f"response larger than {HTTP_MAX_BODY} bytes"
        except OSError as exc:
            return AF_ERR_IO, b"", f"I/O error ({type(exc).__name__})"
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    if not sep or len(head) > HTTP_MAX_HEADER:
        return AF_ERR_IO, b"", "malformed response"
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        return AF_ERR_IO, b"", "malformed status line"
    status = int(status_line[1])
    if not 200 <= status < 300:
        return AF_ERR_IO, b"", f"HTTP {status}"
    if len(body) > HTTP_MAX_BODY:
        return AF_ERR_TOO_LARGE, b"", f"response larger than {HTTP_MAX_BODY} bytes"
    return AF_OK, body, f"HTTP {status}"
