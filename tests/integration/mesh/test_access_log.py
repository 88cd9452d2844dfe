"""`telemetry.access_log: errors` on a real Envoy: a successful call leaves no access log line, a
refused one does (with its RBAC audit line). One sidecar (the signer's) and its tiny app, on free
ports; the package's shared mesh logs everything (`access_log: all`, as `make run` does)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mesh.ca import issue_all, workload_dir
from mesh.envoy import EnvoyProcess
from mesh.methods import contracts
from mesh.render import render
from mesh.topology import load
from tests.harness import eventually, exited
from tests.integration.mesh.conftest import mesh_topology_dict
from tests.integration.mesh.tinyapp import TinyApp, call

SIGN = contracts()["signer"]["Sign"]


class Sidecar:
    def __init__(self, root: Path) -> None:
        raw = mesh_topology_dict()
        raw["telemetry"] = {"access_log": "errors"}
        self.topo = load(raw)
        self.certs = root / "certs"
        issue_all(self.topo, self.certs)
        configs = render(self.topo, certs_dir=self.certs, out_dir=root / "out")
        inst = self.topo.instance("signer")
        self.app = TinyApp(inst.id, inst.app, list(contracts()["signer"].values()))
        self.envoy = EnvoyProcess(configs["signer"], root / "signer.log", log_level="info")
        self.inbound_addr = inst.inbound_addr

    def channel(self, as_instance: str) -> grpc.Channel:
        d = workload_dir(self.certs, as_instance)
        creds = grpc.ssl_channel_credentials(
            (self.certs / "ca" / "bundle.pem").read_bytes(), (d / "key.pem").read_bytes(), (d / "cert.pem").read_bytes()
        )
        return grpc.secure_channel(self.inbound_addr, creds, options=[("grpc.ssl_target_name_override", "signer")])

    def access_lines(self) -> list[dict[str, Any]]:
        """JSON lines Envoy wrote to stdout (its own log lines are not JSON objects)."""
        lines = []
        for text in self.envoy.log_path.read_text(errors="replace").splitlines():
            if text.startswith("{"):
                lines.append(json.loads(text))
        return lines


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    s = Sidecar(tmp_path_factory.mktemp("access-log"))
    s.app.start()
    s.envoy.start()
    try:
        s.envoy.wait_ready(timeout=math.inf)  # fails at once if Envoy exits
        yield s
    finally:
        s.envoy.stop()
        s.app.stop()


def test_only_failed_requests_are_logged(sidecar: Sidecar) -> None:
    with sidecar.channel("registry") as allowed:  # only the registry may sign
        for _ in range(5):
            assert call(allowed, SIGN)[0] == grpc.StatusCode.OK
    with sidecar.channel("scheduler-blue") as refused:
        assert call(refused, SIGN)[0] == grpc.StatusCode.PERMISSION_DENIED
    assert sidecar.app.seen(SIGN.path) == 5

    # Envoy flushes each logger's buffer on its own (at most every 10 s): wait for both lines of the
    # denial (access and audit), then look at everything logged.
    def both_logged() -> bool:
        lines = sidecar.access_lines()
        return any(line.get("path") == SIGN.path for line in lines) and any(
            line.get("event") == "rbac_denial" for line in lines
        )

    # No time bound: the flush comes, however loaded the machine (pytest's timeout ends a hang).
    broken = exited(sidecar.envoy.proc, sidecar.envoy.tail)
    eventually(both_logged, "the denial's access and audit lines", broken=broken)
    logged = [line for line in sidecar.access_lines() if line.get("path") == SIGN.path]
    assert [line["grpc_status"] for line in logged] == [7], logged  # PERMISSION_DENIED only; no OK line
    assert logged[0]["peer"] == sidecar.topo.spiffe_id("scheduler")
    audit = [line for line in sidecar.access_lines() if line.get("event") == "rbac_denial"]
    assert len(audit) == 1 and audit[0]["target"] == SIGN.path
