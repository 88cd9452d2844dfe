"""Test harness: real service processes on loopback, started and stopped by fixtures.

`ServiceProcess` runs `python -m services.<name>` with AF_* settings, waits until the gRPC health
service says SERVING, and on teardown sends SIGTERM (then SIGKILL). Logs go to a file under the
test's tmp dir and are printed when start-up fails, so a failing fixture says why.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_serving(addr: str, timeout: float = 20.0, service: str = "") -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                last = exc
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

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 — the process owns it until stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module], cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_serving(self.addr, timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.logs()[-4000:]}") from None
        return self

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
