"""The whole service stack as real processes (signer → registry → executor → scheduler), each with a
metrics port and OTLP export to an in-memory receiver, scraped by a real Prometheus every second.

Shared by the package's tests: starting it costs a few seconds, so it happens once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import wasmtime

from afctl.client import Client, Endpoints
from observability.render import Target
from tests.harness import REPO, ServiceProcess, free_port
from tests.harness_otlp import OtlpReceiver
from tests.harness_prometheus import PrometheusProcess

ECHO_DIR = REPO / "examples" / "agents" / "echo-upper"


def echo_template() -> tuple[bytes, bytes]:
    manifest = ECHO_DIR / "template.json"
    # Built from the example's source, so the suite does not depend on `make examples` having run.
    return manifest.read_bytes(), bytes(wasmtime.wat2wasm((ECHO_DIR / "echo-upper.wat").read_text()))


@dataclass
class Stack:
    processes: dict[str, ServiceProcess]
    metrics: dict[str, int]  # service -> metrics port
    client: Client
    receiver: OtlpReceiver
    workdir: Path

    def targets(self) -> list[Target]:
        return [Target(name, f"127.0.0.1:{port}", name) for name, port in self.metrics.items()]

    def assert_alive(self) -> None:
        for name, proc in self.processes.items():
            assert proc.alive(), f"{name} died:\n{proc.logs()[-3000:]}"


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("observed")
    metrics = {name: free_port() for name in ("signer", "registry", "executor", "scheduler")}
    started: dict[str, ServiceProcess] = {}
    with OtlpReceiver() as receiver:
        # Export every 100 ms instead of the SDK's 5 s, so tests wait for spans, not for a timer.
        common = {"AF_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}

        def start(name: str, **env: str) -> ServiceProcess:
            proc = ServiceProcess(name, workdir, {**common, "AF_METRICS_ADDR": f"127.0.0.1:{metrics[name]}", **env})
            started[name] = proc.start()
            return proc

        try:
            signer = start("signer", AF_SIGNER_BACKEND="local")
            registry = start("registry", AF_SIGNER_ADDR=signer.addr)
            manifest, module = echo_template()
            with Client(Endpoints(registry.addr, signer.addr, registry.addr)) as bootstrap:
                bootstrap.publish(manifest, module)  # so the executor has something to warm
            executor = start("executor", AF_REGISTRY_ADDR=registry.addr, AF_SIGNER_ADDR=signer.addr)
            scheduler = start("scheduler", AF_REGISTRY_ADDR=registry.addr, AF_EXECUTOR_ADDRS=executor.addr)
            with Client(Endpoints(registry.addr, signer.addr, scheduler.addr)) as client:
                yield Stack(started, metrics, client, receiver, workdir)
        finally:
            for proc in reversed(list(started.values())):
                proc.stop()


@pytest.fixture(scope="package")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProcess]:
    with PrometheusProcess(tmp_path_factory.mktemp("prometheus"), stack.targets(), scrape_interval="1s") as prom:
        prom.wait_targets_up()
        yield prom


def manifest_with(**fields: object) -> bytes:
    base = json.loads(echo_template()[0])
    return json.dumps({**base, **fields}).encode()
