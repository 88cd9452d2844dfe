"""supervisord runs the Envoys from the rendered config and brings back one that dies."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.ca import issue_all
from mesh.envoy import Admin
from mesh.render import render
from mesh.supervisor import _ctl, down, render_conf, running, up
from mesh.topology import Topology, load
from tests.integration.mesh.conftest import mesh_topology_dict
from tests.integration.mesh.tinyapp import wait_until


def _small_topology() -> Topology:
    """Just the signer and the gateway: enough to exercise supervision in a second or two."""
    raw = mesh_topology_dict()
    raw["services"] = {"signer": raw["services"]["signer"]}
    raw["gateway"].update(upstreams=["signer"], reflection_upstream="signer")
    raw["weights"] = {}
    return load(raw)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[Topology, Path, Path]]:
    topo = _small_topology()
    issue_all(topo, tmp_path / "certs")
    render(topo, certs_dir=tmp_path / "certs", out_dir=tmp_path / "out")
    conf = render_conf(topo, out_dir=tmp_path / "out", var_dir=tmp_path / "var", envoy_only=True)
    try:
        yield topo, conf, tmp_path / "out"
    finally:
        down(conf)


def _pid(conf: Path, program: str) -> int:
    out = _ctl(conf, "pid", program).stdout.strip()
    return int(out) if out.isdigit() else 0


def test_supervisor_restarts_a_dead_envoy(supervised: tuple[Topology, Path, Path]) -> None:
    topo, conf, out = supervised
    assert up(conf, topo, out, timeout=30) == []
    assert running(conf)
    first = _pid(conf, "envoy:envoy-signer")
    assert first > 0
    # Idempotent: a second `up` with an unchanged config restarts nothing.
    assert up(conf, topo, out, timeout=30) == []
    assert _pid(conf, "envoy:envoy-signer") == first

    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: _pid(conf, "envoy:envoy-signer") not in (0, first), 15), "envoy was not restarted"
    assert wait_until(Admin(topo.instance("signer").admin).ready, 15)


def test_up_restarts_only_envoys_whose_bootstrap_changed(supervised: tuple[Topology, Path, Path]) -> None:
    topo, conf, out = supervised
    assert up(conf, topo, out, timeout=30) == []
    signer, gateway = _pid(conf, "envoy:envoy-signer"), _pid(conf, "envoy:envoy-gateway")
    boot = out / "signer" / "envoy.yaml"
    boot.write_text(boot.read_text().replace("max_concurrent_streams: 1024", "max_concurrent_streams: 512", 1))
    assert up(conf, topo, out, timeout=30) == []
    assert _pid(conf, "envoy:envoy-signer") not in (0, signer)
    assert _pid(conf, "envoy:envoy-gateway") == gateway


def test_conf_runs_services_with_their_sidecar_addresses(tmp_path: Path) -> None:
    raw = mesh_topology_dict()
    topo = load(raw)
    conf = render_conf(topo, out_dir=tmp_path / "out", var_dir=tmp_path / "var")
    text = conf.read_text()
    sched = topo.instance("scheduler-blue")
    assert f"[program:{sched.id}]" in text
    assert f'AF_EXECUTOR_ADDRS="127.0.0.1:{sched.outbound["executor"]}"' in text
    assert f'AF_REGISTRY_ADDR="127.0.0.1:{sched.outbound["registry"]}"' in text
    assert f'AF_LISTEN_ADDR="127.0.0.1:{sched.app}"' in text
    assert "autorestart=true" in text
