"""The `http_get` tool's HTTP/1.0 client: a blocking host call that epoch interruption cannot stop, so it
carries its own deadline (the run's remaining wall-clock time, at most HTTP_MAX_SECONDS), checked between
socket operations of at most one slice, together with the run's cancel flag."""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections.abc import Callable

from services.executor.sandbox.codes import AF_ERR_IO, AF_ERR_TOO_LARGE, AF_OK
from services.executor.sandbox.state import RunState

HTTP_MAX_BODY = 1024 * 1024
HTTP_MAX_HEADER = 16 * 1024
HTTP_MAX_SECONDS = 10.0  # even a run with a long deadline waits at most this long for one fetch
HTTP_SLICE_SECONDS = 0.02  # socket operations are sliced so a cancel is seen within about one tick


def fetch(host: str, port: int, path: str, deadline: float, run: RunState) -> tuple[int, bytes, str]:
    """HTTP/1.0 GET with a hard deadline, a body cap and cancel checks; (code, body, description)."""

    def remaining() -> float:
        return deadline - time.monotonic()

    if remaining() <= 0:
        return AF_ERR_IO, b"", "no time left before the run's deadline"
    slice_s = min(HTTP_SLICE_SECONDS, run.tick)
    try:
        sock = _connect(host, port, remaining, run, slice_s)
    except OSError as exc:
        return AF_ERR_IO, b"", f"connect failed ({type(exc).__name__})"
    if sock is None:
        return AF_ERR_IO, b"", "cancelled" if run.cancelled else "timed out (the run's deadline)"
    with sock:
        try:
            request = (
                f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\nUser-Agent: agentfactory\r\n\r\n"
            )
            sock.settimeout(max(min(remaining(), slice_s), 0.001))
            sock.sendall(request.encode("latin-1"))
            data = bytearray()
            limit = HTTP_MAX_HEADER + HTTP_MAX_BODY
            while True:
                if run.cancelled:
                    return AF_ERR_IO, b"", "cancelled"
                left = remaining()
                if left <= 0:
                    return AF_ERR_IO, b"", "timed out (the run's deadline)"
                sock.settimeout(min(left, slice_s))
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


def _connect(
    host: str, port: int, remaining: Callable[[], float], run: RunState, slice_s: float
) -> socket.socket | None:
    """A TCP connect that looks at the deadline and the cancel flag every slice (None when either came).
    Allowlisted hosts are expected as addresses: name resolution itself is not sliced."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        err = sock.connect_ex(address)
        while err != 0:
            if err not in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
                raise OSError(err, os.strerror(err))
            if run.cancelled or remaining() <= 0:
                sock.close()
                return None
            _, writable, _ = select.select([], [sock], [], max(min(remaining(), slice_s), 0.0))
            if writable:
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                break
        sock.setblocking(True)
        return sock
    except BaseException:
        sock.close()
        raise
