"""The whole system of `make run`, isolated for end-to-end tests.

`start_mesh(root)` does what `make run` does, with the same functions its commands call
(`mesh.ca issue`, `mesh.render`, `observability.render`, `mesh.supervisor up --prometheus
--trace-sink`, `afctl.quickstart`), but on a copy of ``mesh/topology.yaml`` whose every port is shifted (gateway
28443 instead of 8443, Prometheus 29090) and with certificates, rendered configs and runtime state
under ``root`` (the OTLP trace sink moves too). A developer's running `make run` is untouched,
and a second run of the suite on the same host takes the next free port block.

Nothing is faked: real supervisord, seven real Envoys, the four services (two executors, two
schedulers), Prometheus. `E2EMesh.stop()` shuts supervisord and everything it runs down.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from afctl import quickstart
from afctl.client import Client, Endpoints, Tls
from mesh import DEFAULT_TOPOLOGY, REPO
from mesh.ca import issue_all, mint_token
from mesh.envoy import Admin
from mesh.render import render
from mesh.supervisor import _ctl, _serving, down, render_conf, running, up
from mesh.topology import Topology, load
from mesh.weights import set_weights, wait_applied
from observability import render as observability
from tests.harness import eventually

BIN = REPO / "build" / "bin"
PROTOSET = REPO / "build" / "agentfactory.protoset"
# Port blocks tried in order: +20000 keeps every port (71xx-75xx, 8443, 9090) below Linux's
# ephemeral range (32768+), so no outgoing connection can be sitting on one of ours.
PORT_OFFSETS = (20000, 21000, 22000, 23000)
PROMETHEUS_PORT = 9090


def _ports(raw: dict[str, Any]) -> Iterator[int]:
    for svc in raw["services"].values():
        for inst in svc["instances"]:
            yield from inst["ports"].values()
            yield from inst["outbound"].values()
    yield raw["gateway"]["listen"]["port"]
    yield raw["gateway"]["admin"]
    yield PROMETHEUS_PORT
    if raw.get("database"):
        yield raw["database"]["port"]
    otlp = (raw.get("telemetry") or {}).get("otlp")
    if otlp:
        yield int(otlp.rsplit(":", 1)[1])


def shifted_topology(offset: int, source: Path = DEFAULT_TOPOLOGY) -> dict[str, Any]:
    """The repository's topology with every port moved up by ``offset``; nothing else changes."""
    raw = copy.deepcopy(yaml.safe_load(source.read_text()))
    for svc in raw["services"].values():
        for inst in svc["instances"]:
            inst["ports"] = {k: p + offset for k, p in inst["ports"].items()}
            inst["outbound"] = {k: p + offset for k, p in inst["outbound"].items()}
    raw["gateway"]["listen"]["port"] += offset
    raw["gateway"]["admin"] += offset
    if raw.get("database"):
        raw["database"]["port"] += offset
    otlp = (raw.get("telemetry") or {}).get("otlp")
    if otlp:
        # Our traces go to our own trace sink, never into a developer's.
        host, port = otlp.rsplit(":", 1)
        raw["telemetry"]["otlp"] = f"{host}:{int(port) + offset}"
    return raw


def _alive(pid: int) -> bool:
    """Running, and not a zombie (a daemonized supervisord's parent may never reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers do: a port whose old connections linger in TIME_WAIT is free to listen on.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_offset() -> int:
    base = list(_ports(yaml.safe_load(DEFAULT_TOPOLOGY.read_text())))
    for offset in PORT_OFFSETS:
        if all(_free(p + offset) for p in base):
            return offset
    raise RuntimeError(f"no free port block for the e2e mesh (tried offsets {PORT_OFFSETS})")


@dataclass
class E2EMesh:
    root: Path
    topo: Topology
    topology_path: Path
    certs: Path
    out: Path
    var: Path
    conf: Path
    prometheus_addr: str
    quickstart_output: str = ""
    # The local PostgreSQL's data directory when the mesh runs on it (removed by stop()).
    postgres_dir: Path | None = None
    _clients: list[Client] = field(default_factory=list)

    # --- where things are -----------------------------------------------------------------------

    @property
    def gateway(self) -> str:
        return f"localhost:{self.topo.gateway.port}"

    @property
    def logs(self) -> Path:
        return self.var / "log"

    def status(self) -> str:
        return _ctl(self.conf, "status").stdout

    def describe(self) -> str:
        """What a failing test prints: where the logs are and what supervisord sees."""
        return f"e2e mesh logs: {self.logs}\nsupervisorctl status:\n{self.status()}"

    def pid(self, program: str) -> int:
        """The pid of one of the mesh's services (e.g. "scheduler-blue"), for tests that signal it."""
        return int(_ctl(self.conf, "pid", f"services:{program}", check=True).stdout.strip())

    # --- credentials ----------------------------------------------------------------------------

    def tls(self, role: str) -> Tls:
        d = self.certs / "clients" / role
        return Tls(self.certs / "ca" / "bundle.pem", d / "cert.pem", d / "key.pem")

    def token(self, role: str, **kw: Any) -> str:
        kw.setdefault("subject", f"e2e-{role}")
        return mint_token(self.certs, self.topo, role=role, **kw)

    def client(self, role: str | None = None, *, token: str | None = None, timeout: float = 10.0) -> Client:
        """A gateway client authenticated by the role's certificate, a JWT, both or neither.

        Without a role the channel is still TLS (server verified against the mesh CA), just
        without a client certificate.
        """
        tls = self.tls(role) if role else Tls(self.certs / "ca" / "bundle.pem")
        c = Client(Endpoints.gateway(self.gateway, tls, token), timeout=timeout)
        self._clients.append(c)
        return c

    # --- live changes -----------------------------------------------------------------------------

    def wait_upstreams_healthy(self, service: str) -> None:
        """Wait until every caller's sidecar sees every host of ``service``'s clusters as healthy.

        A failover service's color sheds its traffic to the other color while its own host has not yet
        passed its health checks (just after start-up, or when a loaded machine made it miss one): a
        test that shifts weights and then counts which color served must start from a healthy mesh.
        No time bound (health checks pass eventually; pytest's timeout ends a hang).
        """
        clusters = set(self.topo.services[service].clusters())
        callers = [i for svc in self.topo.services.values() if service in svc.upstreams for i in svc.instances]

        def unhealthy() -> list[str]:
            bad = []
            for inst in callers:
                url = f"http://127.0.0.1:{inst.admin}/clusters"
                try:
                    with urllib.request.urlopen(url, timeout=5) as reply:
                        lines = reply.read().decode().splitlines()
                except OSError as exc:
                    bad.append(f"{inst.id}: {exc}")
                    continue
                for line in lines:
                    parts = line.split("::")
                    if (
                        len(parts) == 4
                        and parts[0] in clusters
                        and parts[2] == "health_flags"
                        and parts[3] != "healthy"
                    ):
                        bad.append(f"{inst.id}: {parts[0]} {parts[1]} {parts[3]}")
            return bad

        what = f"{service} hosts healthy in every caller's sidecar"
        eventually(lambda: not unhealthy(), what, broken=self.broken, interval=0.5)

    def broken(self) -> str | None:
        """A `broken` check for `eventually`: supervisord is gone or gave a program up (FATAL), so what
        a test waits for may never come. (A program it is restarting is not broken: tests kill some.)"""
        return supervisor_broken(self.conf)

    def set_weights(self, service: str, **split: int) -> None:
        """Shift blue/green like `make mesh-weights`, and wait until every affected Envoy applied it."""
        changed = set_weights(self.topo, self.out, service, split)
        # No time bound: Envoy applies a route file it watches eventually (pytest's timeout ends a hang).
        applied = lambda: not wait_applied(self.topo, changed, timeout=1)  # noqa: E731
        eventually(applied, f"route update for {service} {split} applied", broken=self.broken)

    def run_tool(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def stop(self, timeout: float = 60.0) -> None:
        """Shut supervisord and everything it runs down, and make sure of it.

        A loaded machine can take longer than `mesh.supervisor down` waits (services drain, exporters
        flush); a test session must not end with half the mesh still running, so wait for every
        process supervisord ran and SIGKILL what outlives ``timeout``.
        """
        for c in self._clients:
            c.close()
        pids = [
            int(p)
            for p in (_ctl(self.conf, "pid").stdout + _ctl(self.conf, "pid", "all").stdout).split()
            if p.isdigit()
        ]
        down(self.conf, timeout=timeout)
        deadline = time.monotonic() + timeout
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in filter(_alive, pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.postgres_dir is not None:
            shutil.rmtree(self.postgres_dir, ignore_errors=True)


def start_mesh(
    root: Path,
    *,
    sampling_percent: float | None = None,
    launcher: Callable[[Path, Path, Path], Callable[[str, list[str], Mapping[str, str]], list[str]]] | None = None,
    backend: str = "sqlite",
) -> E2EMesh:
    """`make run` into ``root``. On any failure the mesh is stopped and the error names the log dir.

    ``sampling_percent`` replaces the topology's trace sampling (``make run`` traces everything; a
    cluster samples, and the performance gate measures the mesh as the chart deploys it).
    ``launcher(certs, out, var)`` returns the command rewriter of `mesh.supervisor.render_conf`
    (tests/images runs every process from its container image this way).
    ``backend="postgres"`` is `make run BACKEND=postgres`: supervisord also runs the topology's
    PostgreSQL and the registry and both scheduler colors keep their state there.
    """
    if backend not in ("sqlite", "postgres"):
        raise ValueError(f"backend {backend!r}: expected sqlite or postgres")
    offset = pick_offset()
    topology_path = root / "topology.yaml"
    raw = shifted_topology(offset)
    if sampling_percent is not None:
        raw.setdefault("telemetry", {})["sampling_percent"] = sampling_percent
    topology_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    topo = load(topology_path)
    certs, out, var = root / "certs", root / "mesh", root / "var"
    prometheus_addr = f"127.0.0.1:{PROMETHEUS_PORT + offset}"
    issue_all(topo, certs)  # make certs
    render(topo, certs_dir=certs, out_dir=out)  # make mesh
    prom = observability.render(topo, root / "observability", prometheus_addr=prometheus_addr)
    # Not under pytest's tmp dir (0700, ours): as root the server runs as `postgres` (tests/postgres.py).
    postgres_dir = Path(tempfile.mkdtemp(prefix="af-e2e-pg-")) if backend == "postgres" else None
    conf = render_conf(
        topo,
        out_dir=out,
        var_dir=var,
        prometheus_config=prom,
        prometheus_addr=prometheus_addr,
        trace_sink=True,
        launcher=launcher(certs, out, var) if launcher else None,
        postgres_dir=postgres_dir,
    )
    mesh = E2EMesh(root, topo, topology_path, certs, out, var, conf, prometheus_addr, postgres_dir=postgres_dir)
    try:
        up_ready(conf, topo, out)
        printed = io.StringIO()
        args = ["--gateway", mesh.gateway, "--certs-dir", str(certs), "--prometheus-addr", prometheus_addr]
        with contextlib.redirect_stdout(printed):
            rc = quickstart.main(args)
        mesh.quickstart_output = printed.getvalue()
        (root / "quickstart.txt").write_text(mesh.quickstart_output)
        if rc != 0:
            raise RuntimeError(f"afctl.quickstart exited {rc}:\n{mesh.quickstart_output}")
    except BaseException as exc:
        detail = mesh.describe()
        mesh.stop()
        raise RuntimeError(f"the e2e mesh did not come up: {exc}\n{detail}") from exc
    return mesh


def attach_mesh(root: Path) -> E2EMesh:
    """A mesh that `start_mesh(root)` brought up earlier and left running (for iterating on tests:
    ``python -m tests.harness_mesh up DIR`` then ``AF_E2E_MESH_DIR=DIR pytest tests/e2e``)."""
    topo = load(root / "topology.yaml")
    offset = topo.gateway.port - yaml.safe_load(DEFAULT_TOPOLOGY.read_text())["gateway"]["listen"]["port"]
    out = root / "mesh"
    mesh = E2EMesh(
        root,
        topo,
        root / "topology.yaml",
        root / "certs",
        out,
        root / "var",
        out / "supervisord.conf",
        f"127.0.0.1:{PROMETHEUS_PORT + offset}",
    )
    mesh.quickstart_output = (root / "quickstart.txt").read_text()
    return mesh


def supervisor_broken(conf: Path) -> str | None:
    """Why a supervised mesh can no longer get anywhere (supervisord gone, or a program it gave up on,
    FATAL, with its log tail), or None. For `eventually`'s `broken`."""
    if not running(conf):
        return f"supervisord ({conf}) is not running"
    fatal = [line.split()[0] for line in _ctl(conf, "status").stdout.splitlines() if " FATAL " in f" {line} "]
    if not fatal:
        return None
    tails = "\n".join(f"{name}:\n{_ctl(conf, 'tail', name, 'stderr').stdout[-1500:]}" for name in fatal)
    return f"supervisord gave up on {', '.join(fatal)}:\n{tails}"


def up_ready(conf: Path, topo: Topology, out: Path) -> None:
    """`mesh.supervisor.up`, then wait as it does until every Envoy is ready and every service SERVING,
    but with no time bound (a loaded machine takes what it takes; pytest's timeout ends a hang) and
    failing at once if supervisord exits or gives a program up."""
    up(conf, topo, out, timeout=0)  # starts or updates supervisord; the readiness wait is below
    programs = _ctl(conf, "status").stdout
    checks: dict[str, Callable[[], bool]] = {
        eid: Admin(topo.gateway.admin if eid == topo.gateway.id else topo.instance(eid).admin).ready
        for eid in topo.envoy_ids()
    }
    for inst in topo.instances():
        if f"services:{inst.id} " in programs:
            checks[inst.id] = lambda addr=inst.app_addr: _serving(addr)
    pending = list(checks)

    def ready() -> bool:
        pending[:] = [name for name in pending if not checks[name]()]
        return not pending

    eventually(
        ready, "every Envoy ready and every service SERVING", broken=lambda: supervisor_broken(conf), interval=0.2
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print("usage: python -m tests.harness_mesh up|down DIR", file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    if argv[0] == "up":
        root.mkdir(parents=True, exist_ok=True)
        mesh = start_mesh(root)
        print(f"e2e mesh up: gateway {mesh.gateway}, logs {mesh.logs}; AF_E2E_MESH_DIR={root} pytest tests/e2e")
    else:
        attach_mesh(root).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
