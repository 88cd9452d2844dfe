"""Test harness: real service processes on loopback, started and stopped by fixtures.

`ServiceProcess` runs `python -m services.<name>` with AF_* settings, waits until the gRPC health
service says SERVING, and on teardown sends SIGTERM (then SIGKILL). Logs go to a file under the
test's tmp dir and are printed when start-up fails, so a failing fixture says why.

`eventually(predicate, what)` is how every test waits for what the system promises will happen (a
process SERVING, a health flag, a log line, a metric): with no time bound, because a loaded CI machine
may take any time, and pytest's own timeout (pyproject.toml) ends a hang with a stack trace at the line
that waited. Given `broken` (e.g. `exited(popen, logs)`), it fails at once, naming what it awaited,
when the process it waits on has died and so can never get there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


T = TypeVar("T")


def eventually(
    predicate: Callable[[], T], what: str, *, broken: Callable[[], str | None] | None = None, interval: float = 0.05
) -> T:
    """Poll `predicate()` until it returns something truthy, and return that; no time bound (see above).

    `broken()` says why the wait can no longer end well (the watched process exited, with its log tail)
    or None; then this fails at once, naming `what` was awaited."""
    while not (value := predicate()):
        if broken is not None and (why := broken()):
            if value := predicate():  # it got there just before it stopped
                break
            raise AssertionError(f"gave up waiting for {what}: {why}")
        time.sleep(interval)
    return value


def exited(proc: subprocess.Popen[bytes] | None, logs: Callable[[], str] = lambda: "") -> Callable[[], str | None]:
    """A `broken` check for `eventually`: the process has exited (with its return code and log tail)."""

    def check() -> str | None:
        if proc is None or proc.poll() is None:
            return None
        return f"the process exited with {proc.returncode}; its log ends:\n{logs()[-4000:]}"

    return check


class NotServing(RuntimeError):
    """The process a `wait_serving` watched exited before it turned SERVING."""


def wait_serving(
    addr: str,
    timeout: float | None = None,
    service: str = "",
    broken: Callable[[], str | None] | None = None,
) -> None:
    """Until `addr`'s gRPC health check (of `service`) says SERVING. Without a timeout, as long as it takes
    (pytest's timeout ends a hang); with `broken`, fails at once (NotServing) when that says why it never
    will. A `timeout` is for callers that poll in short slices and check something else between them."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last: Exception | None = None
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while deadline is None or time.monotonic() < deadline:
            try:
                # A guard against a hung call, not a speed limit: an unanswered check is just asked again.
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                last = exc
            if broken is not None and (why := broken()):
                raise NotServing(f"{addr} never SERVING{f' ({service})' if service else ''}: {why}")
            time.sleep(0.05)
    raise TimeoutError(f"{addr} not SERVING after {timeout}s (last error: {last})")


class ServiceProcess:
    """One real service process. Use as a context manager or call start()/stop()."""

    def __init__(self, name: str, workdir: Path, env: Mapping[str, str] | None = None, port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.env = {
            **os.environ,
            "AF_SERVICE_ID": name,
            "AF_LISTEN_ADDR": self.addr,
            "AF_DATA_DIR": str(workdir / f"{name}-data"),
            "AF_SHUTDOWN_GRACE_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def module(self) -> str:
        return "services." + self.name.split("-")[0]

    def start(self) -> ServiceProcess:
        """Start it and wait until it is SERVING, however long a loaded machine takes; if it exits
        first, fail at once with its log."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 — the process owns it until stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module], cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.wait_serving()
        return self

    def wait_serving(self, service: str = "") -> None:
        """Until its health check (of `service`) says SERVING; fails at once, with its log, if it exits."""
        try:
            wait_serving(self.addr, service=service, broken=self.exited)
        except NotServing:
            self.stop()
            ready = f" ({service} never SERVING)" if service else ""
            raise RuntimeError(f"{self.name} did not start{ready}:\n{self.logs()[-4000:]}") from None

    def exited(self) -> str | None:
        """A `broken` check for `eventually`: this process has exited (with its log tail)."""
        return exited(self.proc, self.logs)()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash case (no graceful shutdown)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
