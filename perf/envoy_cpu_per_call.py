"""Envoy CPU per call at the gateway and at one sidecar: N unary calls client -> gateway -> registry
sidecar -> a tiny app (no service code), so the figure is Envoy's own work per call (TLS, HTTP/2,
filters: identity gate, RBAC, router). Used to compare Envoy configs (perf/NOTES.md).

    .venv/bin/python -m perf.envoy_cpu_per_call [CALLS] [ROUNDS]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import grpc

from mesh.ca import issue_all
from mesh.envoy import EnvoyProcess
from mesh.methods import contracts
from mesh.render import render
from mesh.topology import load
from tests.integration.mesh.conftest import mesh_topology_dict
from tests.integration.mesh.tinyapp import TinyApp, call, wait_until

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main(calls: int = 3000, rounds: int = 3) -> None:
    root = Path(tempfile.mkdtemp(prefix="envoy-cpu-"))
    topo = load(mesh_topology_dict())
    issue_all(topo, root / "certs")
    configs = render(topo, certs_dir=root / "certs", out_dir=root / "out")
    catalog = contracts()
    app = TinyApp("registry", topo.instance("registry").app, list(catalog["registry"].values()))
    app.start()
    envoys = {e: EnvoyProcess(configs[e], root / f"{e}.log") for e in ("gateway", "registry")}
    try:
        for e in envoys.values():
            e.start()
        for e in envoys.values():
            e.wait_ready()
        d = root / "certs" / "clients" / "viewer"
        bundle = (root / "certs" / "ca" / "bundle.pem").read_bytes()
        creds = grpc.ssl_channel_credentials(bundle, (d / "key.pem").read_bytes(), (d / "cert.pem").read_bytes())
        with grpc.secure_channel(f"localhost:{topo.gateway.port}", creds) as channel:
            method = catalog["registry"]["GetTemplate"]
            assert wait_until(lambda: call(channel, method)[0] == grpc.StatusCode.OK, 20)
            for _ in range(500):  # warm up: connections, route tables, allocator
                call(channel, method)
            per_call: dict[str, list[float]] = {k: [] for k in envoys}
            for _ in range(rounds):
                app.reset()
                before = {k: cpu_seconds(e.pid) for k, e in envoys.items()}
                for _ in range(calls):
                    status, _ = call(channel, method)
                    assert status == grpc.StatusCode.OK, status
                for k, e in envoys.items():
                    per_call[k].append((cpu_seconds(e.pid) - before[k]) / calls * 1e6)
        for k, values in per_call.items():
            values.sort()
            median = round(values[len(values) // 2])
            print(f"{k}: Envoy CPU per call (us), rounds {[round(v) for v in values]}, median {median}")
    finally:
        for e in envoys.values():
            e.stop()
        app.stop()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
