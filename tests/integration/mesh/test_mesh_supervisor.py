"""supervisord runs the Envoys from the rendered config, brings back one that dies, and `down` returns
only once it and everything it ran have exited."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.ca import issue_all
from mesh.envoy import Admin
from mesh.render import render
from mesh.supervisor import _ctl, down, render_conf, running
from mesh.topology import Topology, load
from tests.harness import eventually
from tests.harness_mesh import supervisor_broken, up_ready
from tests.integration.mesh.conftest import mesh_topology_dict

# A program that takes its time to stop, as PostgreSQL's shutdown or a service's drain does (it also
# starts a child in its process group, as the postmaster does its backends, and stops it first).
SLOW_STOP = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
def stop(*_):
    time.sleep(float(sys.argv[1]))
    child.terminate()
    child.wait()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
time.sleep(600)
"""


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
    up_ready(conf, topo, out)
    assert running(conf)
    first = _pid(conf, "envoy:envoy-signer")
    assert first > 0
    # Idempotent: a second `up` with an unchanged config restarts nothing.
    up_ready(conf, topo, out)
    assert _pid(conf, "envoy:envoy-signer") == first

    os.kill(first, signal.SIGKILL)
    # No time bound: supervisord restarts it eventually; it fails at once if supervisord gives it up.
    broken = lambda: supervisor_broken(conf)  # noqa: E731
    eventually(lambda: _pid(conf, "envoy:envoy-signer") not in (0, first), "envoy restarted", broken=broken)
    eventually(Admin(topo.instance("signer").admin).ready, "the restarted envoy ready", broken=broken)


def test_up_restarts_only_envoys_whose_bootstrap_changed(supervised: tuple[Topology, Path, Path]) -> None:
    topo, conf, out = supervised
    up_ready(conf, topo, out)
    signer, gateway = _pid(conf, "envoy:envoy-signer"), _pid(conf, "envoy:envoy-gateway")
    boot = out / "signer" / "envoy.yaml"
    boot.write_text(boot.read_text().replace("max_concurrent_streams: 1024", "max_concurrent_streams: 512", 1))
    up_ready(conf, topo, out)
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


def _add_slow_program(conf: Path, script: Path, stop_seconds: float, stopwaitsecs: int) -> None:
    script.write_text(SLOW_STOP)
    with conf.open("a") as f:
        f.write(
            f"\n[program:slow-stop]\ncommand={sys.executable} {script} {stop_seconds}\nautostart=true\n"
            f"startsecs=0\nstopsignal=TERM\nstopwaitsecs={stopwaitsecs}\n"
        )


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_down_waits_for_everything_so_up_can_follow_at_once(
    supervised: tuple[Topology, Path, Path], tmp_path: Path
) -> None:
    topo, conf, out = supervised
    _add_slow_program(conf, tmp_path / "slow_stop.py", stop_seconds=2.0, stopwaitsecs=30)
    up_ready(conf, topo, out)
    supervisord = int(_ctl(conf, "pid").stdout)
    programs = [int(p) for p in _ctl(conf, "pid", "all").stdout.split()]
    assert len(programs) == 3 and all(programs)  # two Envoys and the slow program

    assert down(conf) == []
    assert not [p for p in (supervisord, *programs) if _alive(p)]
    # What `make stop && make run` does: a new supervisord takes the socket and the Envoys their ports.
    up_ready(conf, topo, out)
    assert running(conf)


def test_down_is_bounded_and_a_second_down_finishes_the_shutdown(
    supervised: tuple[Topology, Path, Path], tmp_path: Path
) -> None:
    topo, conf, out = supervised
    _add_slow_program(conf, tmp_path / "slow_stop.py", stop_seconds=600.0, stopwaitsecs=600)
    up_ready(conf, topo, out)
    slow = _pid(conf, "slow-stop")
    supervisord = int(_ctl(conf, "pid").stdout)

    # Not a speed limit: the slow program takes 600 s to stop, so `down` must give up at its 1 s bound.
    left = down(conf, timeout=1.0)
    assert left[0] == f"supervisord (pid {supervisord})"
    assert f"process group {slow}" in left
    # supervisord is shutting down and no longer answers; once its last program exits, so does it.
    os.kill(slow, signal.SIGKILL)
    assert down(conf) == []
    assert not _alive(supervisord)
