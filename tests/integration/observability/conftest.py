"""Two fixtures, each started once for the package (starting costs seconds) and only when a test asks:

- `stack`: the service stack as real processes (signer → registry → executor → scheduler), each with
  a metrics port and OTLP export to an in-memory receiver, scraped by a real Prometheus every second.
- `traced_mesh`: the whole mesh of `make run` (real supervisord, Envoy sidecars and gateway, the four
  services) on a shifted port block, every Envoy and service exporting traces to an in-test receiver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import wasmtime
import yaml

from afctl.client import Client, Endpoints
from mesh.ca import issue_all, workload_dir
from mesh.render import render
from mesh.supervisor import render_conf
from mesh.topology import Topology, load
from observability.render import Target
from observability.trace_sink import JsonlStore
from tests.harness import REPO, ServiceProcess, free_port
from tests.harness_mesh import E2EMesh, pick_offset, shifted_topology, up_ready
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


# --- the whole mesh (sidecars, gateway, supervisord), tracing to an in-test receiver ------------------


@dataclass
class TracedMesh:
    mesh: E2EMesh
    receiver: OtlpReceiver
    spans_file: Path  # what the receiver got, as the trace sink of `make run` stores it

    @property
    def topo(self) -> Topology:
        return self.mesh.topo

    def workload_channel(self, instance_id: str, as_instance: str) -> grpc.Channel:
        """Straight to `instance_id`'s sidecar inbound listener, with `as_instance`'s workload identity."""
        d = workload_dir(self.mesh.certs, as_instance)
        bundle = (self.mesh.certs / "ca" / "bundle.pem").read_bytes()
        creds = grpc.ssl_channel_credentials(bundle, (d / "key.pem").read_bytes(), (d / "cert.pem").read_bytes())
        inst = self.topo.instance(instance_id)
        return grpc.secure_channel(inst.inbound_addr, creds, options=[("grpc.ssl_target_name_override", inst.service)])


def traced_topology(receiver: OtlpReceiver) -> dict[str, Any]:
    """`make run`'s topology on a free shifted port block (tests/harness_mesh.py), one instance per
    service (CPU is scarce: the trace tree needs no blue/green), exporting traces to `receiver`."""
    raw = shifted_topology(pick_offset())
    for name in ("executor", "scheduler"):
        raw["services"][name]["instances"] = [i for i in raw["services"][name]["instances"] if i["color"] == "blue"]
        raw["services"][name].pop("failover", None)  # one color has nothing to fall back to
        raw["weights"][name] = {"blue": 100}
    raw["telemetry"] = {"otlp": receiver.endpoint}
    for svc in raw["services"].values():
        # Export every 100 ms instead of every second, so tests wait for spans, not for a timer.
        svc["env"] = {**(svc.get("env") or {}), "OTEL_BSP_SCHEDULE_DELAY": "100"}
    return raw


@pytest.fixture(scope="package")
def traced_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedMesh]:
    root = tmp_path_factory.mktemp("traced-mesh")
    spans_file = root / "var" / "traces" / "spans.jsonl"
    with OtlpReceiver(store=JsonlStore(spans_file)) as receiver:
        topology_path = root / "topology.yaml"
        topology_path.write_text(yaml.safe_dump(traced_topology(receiver), sort_keys=False))
        topo = load(topology_path)
        certs, out, var = root / "certs", root / "mesh", root / "var"
        issue_all(topo, certs)
        render(topo, certs_dir=certs, out_dir=out)
        conf = render_conf(topo, out_dir=out, var_dir=var)
        mesh = E2EMesh(root, topo, topology_path, certs, out, var, conf, prometheus_addr="")
        try:
            up_ready(conf, topo, out)  # no time bound; fails at once if supervisord gives a program up
            yield TracedMesh(mesh, receiver, spans_file)
        finally:
            mesh.stop()
