"""A real Prometheus (the Debian package's /usr/bin/prometheus) for tests.

`PrometheusProcess` writes a config rendered by observability.render (with the project's rule
files), starts Prometheus on a free loopback port with its own TSDB under the test's tmp dir, waits
for /-/ready, and answers PromQL through the HTTP API. Stopped with SIGTERM, like a service.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from observability.render import Target, prometheus_config, write_prometheus
from tests.harness import eventually, exited, free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class PromQLError(RuntimeError):
    """Prometheus refused a query (bad syntax, unknown function, ...); the message is its own."""


class PrometheusProcess:
    def __init__(
        self, workdir: Path, targets: Iterable[Target], scrape_interval: str = "1s", extra_args: Iterable[str] = ()
    ) -> None:
        self.workdir = workdir
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.addr}"
        self.log_path = workdir / "prometheus.log"
        config = prometheus_config(targets, scrape_interval=scrape_interval, self_addr=self.addr)
        self.config_path = write_prometheus(config, workdir / "config")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 — the process owns it until stop()
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address={self.addr}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as reply:
                    return reply.status == 200
            except OSError:
                return False

        # No time bound (pytest's timeout ends a hang); at once a failure with its log if it exits.
        eventually(ready, f"prometheus at {self.url} ready", broken=exited(self.proc, self.logs), interval=0.1)
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> PrometheusProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- HTTP API ----------------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                body = json.load(reply)
        except urllib.error.HTTPError as exc:  # 400/422: Prometheus explains in the body
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')} (GET {url})")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result as Prometheus returns it (vector: list of {metric, value})."""
        data = self.api("query", query=expr)
        result = data["result"]
        return result if data["resultType"] in ("vector", "matrix") else [{"metric": {}, "value": result}]

    def targets(self) -> list[dict[str, Any]]:
        return self.api("targets")["activeTargets"]

    def wait_until(self, what: str, check: Callable[[], bool]) -> None:
        """Until `check()` holds: Prometheus promises it eventually (a scrape, a rule evaluation), a loaded
        machine decides when; pytest's timeout ends a hang. Fails at once if Prometheus exits."""
        broken = exited(self.proc, self.logs)
        eventually(check, f"prometheus: {what}", broken=broken, interval=0.2)

    def wait_targets_up(self) -> None:
        def all_up() -> bool:
            targets = self.targets()
            return bool(targets) and all(t["health"] == "up" for t in targets)

        self.wait_until("every target up", all_up)
