"""The whole system of `make run`, every Envoy and service a container from the images (the
`make run-containers` topology, on shifted ports), passes the end-to-end smoke: the quickstart
publishes the examples and runs one agent through the gateway, an operator runs an agent, a
viewer is denied RunAgent by the gateway's RBAC, and a blue/green executor shift moves runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import grpc
import pytest

from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from mesh.containers import Daemon, Launcher
from tests.harness_mesh import E2EMesh, start_mesh


@pytest.fixture(scope="module")
def image_mesh(daemon: Daemon, tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    root = tmp_path_factory.mktemp("image-mesh")
    label = "mesh-" + hashlib.sha256(str(root).encode()).hexdigest()[:10]

    def launcher(certs: Path, out: Path, var: Path) -> Callable[[str, list[str], Mapping[str, str]], list[str]]:
        return Launcher(daemon, tag=tag, read_only=[certs, out], label=label)

    mesh = start_mesh(root, launcher=launcher)
    try:
        yield mesh
    finally:
        mesh.stop()
        daemon.remove_labelled(label)


def test_every_process_is_a_container(image_mesh: E2EMesh, daemon: Daemon) -> None:
    names = set(daemon.docker("ps", "--format", "{{.Names}}").stdout.split())
    for program in [f"envoy-{e}" for e in image_mesh.topo.envoy_ids()] + [i.id for i in image_mesh.topo.instances()]:
        assert any(n.endswith("-" + program) for n in names), (program, sorted(names))


def test_quickstart_published_and_ran(image_mesh: E2EMesh) -> None:
    assert "text-stats" in image_mesh.quickstart_output


def test_operator_runs_an_agent(image_mesh: E2EMesh) -> None:
    final, output = image_mesh.client("operator").run_to_end("echo-upper", b"from images")
    assert final.state == sch_pb.AGENT_STATE_SUCCEEDED, final
    assert output == b"FROM IMAGES"


def test_viewer_is_denied_a_run(image_mesh: E2EMesh) -> None:
    with pytest.raises(grpc.RpcError) as err:
        image_mesh.client("viewer").run_to_end("echo-upper", b"no")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_blue_green_shift_moves_runs(image_mesh: E2EMesh) -> None:
    op = image_mesh.client("operator")

    def executor() -> str:
        return op.run_to_end("echo-upper", b"x")[0].executor

    image_mesh.wait_upstreams_healthy("executor")
    try:
        for color in ("green", "blue"):
            image_mesh.set_weights("executor", **{c: 100 if c == color else 0 for c in ("blue", "green")})
            # The admin API reports the new route version a moment before every Envoy worker thread
            # routes by it: a few runs may still land on the old color, then every run on the new one.
            streak, runs = 0, 0
            while streak < 20 and runs < 300:
                streak = streak + 1 if executor() == f"executor-{color}" else 0
                runs += 1
            assert streak == 20, f"no 20 runs in a row on {color} within {runs} runs after the shift"
    finally:
        image_mesh.set_weights("executor", blue=50, green=50)
