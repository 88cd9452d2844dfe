"""Losing an executor in the shipped topology: one executor per color, weights 100/0.

Its own mesh (not the package's, which runs two blue executors): each color's cluster has one host of
its own plus the other color at Envoy priority 1 (topology ``failover``). Active health checks need
five failures 2 s apart here, so outlier ejection alone takes the dead host out, and the test reads
Envoy's own figures for it: an enforced ejection, no overflow, the host flagged, and no retry needed
once it is out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import grpc
import pytest

from mesh.methods import contracts
from mesh.topology import load
from tests.harness import eventually
from tests.integration.mesh.conftest import Mesh, mesh_topology_dict, running_mesh
from tests.integration.mesh.tinyapp import call

RUN = contracts()["executor"]["Run"]
CLUSTER = "executor-blue"


def shipped_executors_topology() -> dict[str, object]:
    raw = mesh_topology_dict()
    executors = raw["services"]["executor"]["instances"]  # type: ignore[index]
    raw["services"]["executor"]["instances"] = [i for i in executors if i["id"] != "executor-blue-2"]  # type: ignore[index]
    resilience = copy.deepcopy(raw["resilience"])
    resilience.update(health_interval="2s", health_unhealthy_threshold=5)  # type: ignore[attr-defined]
    raw["resilience"] = resilience
    return raw


@pytest.fixture(scope="module")
def one_per_color(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("failover")
    topo = load(shipped_executors_topology())
    assert topo.services["executor"].failover, "mesh/topology.yaml no longer marks executors failover"
    with running_mesh(root, topo) as m:
        yield m


def _flags(mesh: Mesh, envoy_id: str, cluster: str) -> dict[str, str]:
    """hostname -> health flags, as the caller's sidecar sees the cluster's hosts."""
    lines = mesh.admin(envoy_id).get("/clusters").splitlines()
    names = {
        ln.split("::")[1]: ln.rsplit("::", 1)[-1]
        for ln in lines
        if ln.startswith(f"{cluster}::") and "::hostname::" in ln
    }
    return {
        names[ln.split("::")[1]]: ln.rsplit("::", 1)[-1]
        for ln in lines
        if ln.startswith(f"{cluster}::") and "::health_flags::" in ln
    }


def test_a_dead_executor_is_ejected_and_its_color_sheds_its_weight(one_per_color: Mesh) -> None:
    mesh = one_per_color
    admin = mesh.admin("scheduler-blue")
    outbound = mesh.outbound("scheduler-blue", "executor")
    # Both hosts of the blue cluster: blue at priority 0, green as its fallback.
    both = {"executor-blue": "healthy", "executor-green": "healthy"}
    eventually(lambda: _flags(mesh, "scheduler-blue", CLUSTER) == both, "the cluster up whole", broken=mesh.broken)
    # Right after start-up Envoy's balancer can lag the health flags it shows (a host "healthy" in
    # /clusters still unused, or used while its fallback is not yet): start after two more health
    # rounds of this cluster (two hosts each).
    checks = f"cluster.{CLUSTER}.health_check.success"
    done = admin.stats(checks).get(checks, 0)
    eventually(lambda: admin.stats(checks).get(checks, 0) >= done + 4, "two more health rounds", broken=mesh.broken)
    assert {call(outbound, RUN)[1].get("x-served-by") for _ in range(10)} == {"executor-blue"}
    stat = f"cluster.{CLUSTER}.outlier_detection."
    before = admin.stats(stat)

    mesh.apps["executor-blue"].stop()  # the executor dies; its sidecar answers UNAVAILABLE (connect failure)
    during = [call(outbound, RUN) for _ in range(10)]
    eventually(
        lambda: _flags(mesh, "scheduler-blue", CLUSTER).get("executor-blue") != "healthy",
        "executor-blue flagged unhealthy by the scheduler's sidecar",
        broken=mesh.broken,
    )
    retries = admin.stats(f"cluster.{CLUSTER}.upstream_rq_retry").get(f"cluster.{CLUSTER}.upstream_rq_retry", 0)
    after = [call(outbound, RUN) for _ in range(20)]
    figures = admin.stats(stat)

    def grew(name: str) -> int:
        return figures.get(stat + name, 0) - before.get(stat + name, 0)

    # Retries reach the other color even before the ejection (its weight is 0, but it is blue's fallback).
    assert [s for s, _ in during] == [grpc.StatusCode.OK] * 10, (during, figures)
    # Envoy's figures: the host was ejected for consecutive gateway failures, nothing overflowed
    # (before, a one-host color could never be ejected: max_ejection_percent 50 < 100 %).
    assert grew("ejections_enforced_consecutive_gateway_failure") >= 1, figures
    assert grew("ejections_overflow") == 0, figures
    assert figures.get(stat + "ejections_active", 0) == 1, figures
    assert "failed_outlier_check" in _flags(mesh, "scheduler-blue", CLUSTER)["executor-blue"]
    # Out of rotation: every call goes straight to green, with no retry spent on the dead host.
    assert [s for s, _ in after] == [grpc.StatusCode.OK] * 20, after
    assert {t.get("x-served-by") for _, t in after} == {"executor-green"}
    retries_after = admin.stats(f"cluster.{CLUSTER}.upstream_rq_retry").get(f"cluster.{CLUSTER}.upstream_rq_retry", 0)
    assert retries_after == retries
