"""grpc.health.v1 through the gateway answers for each service by its name, from that service
(mesh/gateway_health.py), as grpcurl, grpc_health_probe and load balancers ask."""

from __future__ import annotations

import subprocess
import urllib.request

import pytest

from mesh import REPO
from mesh.methods import contracts
from tests.harness_mesh import E2EMesh

GRPCURL = str(REPO / "build/bin/grpcurl")
NAMES = sorted(f"agentfactory.{svc}.v1.{svc.capitalize()}Service" for svc in contracts())


def check(mesh: E2EMesh, service: str, *extra: str) -> subprocess.CompletedProcess[str]:
    tls = mesh.tls("viewer")
    cmd = [GRPCURL, "-cacert", str(tls.ca), "-cert", str(tls.cert), "-key", str(tls.key), *extra]
    cmd += ["-d", f'{{"service": "{service}"}}', mesh.gateway, "grpc.health.v1.Health/Check"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.mark.parametrize("service", NAMES)
def test_each_service_answers_for_its_name(e2e_mesh: E2EMesh, service: str) -> None:
    done = check(e2e_mesh, service)
    assert done.returncode == 0 and '"SERVING"' in done.stdout, (done.stdout, done.stderr)


@pytest.mark.parametrize("color", ["blue", "green"])
def test_a_color_answers_when_named(e2e_mesh: E2EMesh, color: str) -> None:
    done = check(e2e_mesh, "agentfactory.executor.v1.ExecutorService", "-H", f"x-agentfactory-color: {color}")
    assert done.returncode == 0 and '"SERVING"' in done.stdout, (done.stdout, done.stderr)


def test_an_unknown_name_is_not_found(e2e_mesh: E2EMesh) -> None:
    done = check(e2e_mesh, "no.such.Service")
    assert done.returncode != 0 and "NotFound" in done.stderr, (done.stdout, done.stderr)


def test_the_answer_comes_from_the_named_service(e2e_mesh: E2EMesh) -> None:
    # The gateway counts the requests it sends each cluster: a registry health check goes to the registry.
    url = f"http://127.0.0.1:{e2e_mesh.topo.gateway.admin}/stats?filter=^cluster[.]registry[.]upstream_rq_total$"

    def sent_to_registry() -> int:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return int(reply.read().decode().split(":")[1])

    before = sent_to_registry()
    assert check(e2e_mesh, "agentfactory.registry.v1.RegistryService").returncode == 0
    assert sent_to_registry() == before + 1
