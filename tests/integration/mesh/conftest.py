"""One real mesh for the whole module set: a CA, every Envoy of a test topology, tiny apps.

The topology is the repository's own ``mesh/topology.yaml`` with every port replaced by a free
one, short timeouts (so timeout behaviour is observable in a second or two), a second blue
executor (so retries and outlier ejection have another host to go to), and both splits at
100/0. Every Envoy is the real binary; every app is a real grpc.aio server.
"""

from __future__ import annotations

import contextlib
import copy
import math
import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from cryptography import x509

from mesh import DEFAULT_TOPOLOGY
from mesh.ca import issue_all, mint_token, workload_dir
from mesh.envoy import Admin, EnvoyProcess
from mesh.methods import contracts
from mesh.render import render
from mesh.topology import Topology, load
from mesh.weights import set_weights, wait_applied
from tests.harness import eventually
from tests.integration.mesh.tinyapp import TinyApp

# One identity per workload; for tests acting as a workload, the instance whose key to use.
ACT_AS = {
    "registry": "registry",
    "signer": "signer",
    "executor": "executor-green",
    "scheduler": "scheduler-green",
    "gateway": "gateway",
}
CHANNEL_OPTIONS = [
    # A fresh connection per channel: rotation and mTLS tests must not reuse another test's.
    ("grpc.use_local_subchannel_pool", 1),
]


def free_ports(n: int) -> list[int]:
    """n distinct free ports (all bound at once, so no duplicates)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def mesh_topology_dict() -> dict[str, Any]:
    raw = copy.deepcopy(yaml.safe_load(DEFAULT_TOPOLOGY.read_text()))
    executors = raw["services"]["executor"]["instances"]
    extra = copy.deepcopy(executors[0])
    extra["id"] = "executor-blue-2"
    executors.insert(1, extra)
    ports = iter(free_ports(64))
    for svc in raw["services"].values():
        for inst in svc["instances"]:
            inst["ports"] = {k: next(ports) for k in inst["ports"]}
            inst["outbound"] = {k: next(ports) for k in inst["outbound"]}
    raw["gateway"]["listen"]["port"] = next(ports)
    raw["gateway"]["admin"] = next(ports)
    raw["timeouts"].update(stream_idle="1.5s", unary_max="1.5s", long_lived_idle="60s", grpc_timeout_max="300s")
    raw["resilience"].update(health_interval="1s", outlier_interval="1s")
    raw["weights"] = {"scheduler": {"blue": 100, "green": 0}, "executor": {"blue": 100, "green": 0}}
    return raw


@dataclass
class Mesh:
    topo: Topology
    certs: Path
    out: Path
    apps: dict[str, TinyApp]
    envoys: dict[str, EnvoyProcess]
    channels: list[grpc.Channel] = field(default_factory=list)

    # -- credentials ---------------------------------------------------------------------------

    def bundle(self) -> bytes:
        return (self.certs / "ca" / "bundle.pem").read_bytes()

    def workload_creds(self, who: str) -> grpc.ChannelCredentials:
        d = workload_dir(self.certs, ACT_AS.get(who, who))
        return grpc.ssl_channel_credentials(self.bundle(), (d / "key.pem").read_bytes(), (d / "cert.pem").read_bytes())

    def client_creds(self, name: str | None) -> grpc.ChannelCredentials:
        if name is None:
            return grpc.ssl_channel_credentials(self.bundle())
        d = self.certs / "clients" / name
        return grpc.ssl_channel_credentials(self.bundle(), (d / "key.pem").read_bytes(), (d / "cert.pem").read_bytes())

    def token(self, role: str, **kw: Any) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {mint_token(self.certs, self.topo, role=role, subject='t', **kw)}")]

    # -- channels ------------------------------------------------------------------------------

    def _keep(self, ch: grpc.Channel) -> grpc.Channel:
        self.channels.append(ch)
        return ch

    def inbound(self, instance_id: str, creds: grpc.ChannelCredentials) -> grpc.Channel:
        """Straight to a sidecar's mTLS inbound listener, as whoever ``creds`` says."""
        inst = self.topo.instance(instance_id)
        opts = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", inst.service)]
        return self._keep(grpc.secure_channel(inst.inbound_addr, creds, options=opts))

    def outbound(self, instance_id: str, upstream: str) -> grpc.Channel:
        """What the app ``instance_id`` uses to call ``upstream``: its sidecar's plaintext listener."""
        port = self.topo.instance(instance_id).outbound[upstream]
        return self._keep(grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS))

    def gateway(self, creds: grpc.ChannelCredentials) -> grpc.Channel:
        return self._keep(grpc.secure_channel(f"localhost:{self.topo.gateway.port}", creds, options=CHANNEL_OPTIONS))

    def admin(self, envoy_id: str) -> Admin:
        return self.envoys[envoy_id].admin

    def set_weights(self, service: str, **split: int) -> None:
        changed = set_weights(self.topo, self.out, service, split)
        # No time bound: Envoy applies a route file it watches eventually (pytest's timeout ends a hang).
        applied = lambda: not wait_applied(self.topo, changed, timeout=1)  # noqa: E731
        eventually(applied, f"route update for {service} {split} applied", broken=self.broken)

    def broken(self) -> str | None:
        """A `broken` check for `eventually`: a sidecar has exited (no test here stops one on purpose)."""
        dead = [eid for eid, e in self.envoys.items() if e.proc is not None and e.proc.poll() is not None]
        return "\n".join(f"envoy {eid} exited:\n{self.envoys[eid].tail()}" for eid in dead) or None

    def app_for(self, service: str) -> TinyApp:
        """The app behind the first instance of a service (the one tests dial directly)."""
        return self.apps[self.topo.services[service].instances[0].id]


def peer_cert(addr: str, server_name: str, certs: Path, as_instance: str) -> x509.Certificate:
    """The certificate a TLS listener presents right now (a fresh handshake, like a new peer)."""
    ctx = ssl.create_default_context(cafile=str(certs / "ca" / "bundle.pem"))
    d = workload_dir(certs, as_instance)
    ctx.load_cert_chain(str(d / "cert.pem"), str(d / "key.pem"))
    ctx.set_alpn_protocols(["h2"])
    host, port = addr.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@contextlib.contextmanager
def running_mesh(root: Path, topo: Topology) -> Iterator[Mesh]:
    """The topology's sidecars (real Envoy, certificates issued under root) in front of a TinyApp per
    instance, once every sidecar is ready and every app was health-checked through it; all stopped after."""
    certs, out = root / "certs", root / "out"
    issue_all(topo, certs)
    configs = render(topo, certs_dir=certs, out_dir=out)
    catalog = contracts()
    apps = {i.id: TinyApp(i.id, i.app, list(catalog[i.service].values())) for i in topo.instances()}
    envoys = {eid: EnvoyProcess(cfg, root / "logs" / f"{eid}.log", log_level="info") for eid, cfg in configs.items()}
    try:
        for app in apps.values():
            app.start()
        for e in envoys.values():
            e.start()
        # No time bound (pytest's timeout ends a hang); wait_ready fails at once if an Envoy exits.
        with ThreadPoolExecutor(len(envoys)) as pool:
            list(pool.map(lambda e: e.wait_ready(timeout=math.inf), envoys.values()))
        m = Mesh(topo, certs, out, apps, envoys)
        # Wait for the first round of active health checks so no test races cluster warm-up.
        for app in apps.values():
            seen = lambda app=app: app.seen("/grpc.health.v1.Health/Check") > 0  # noqa: E731
            eventually(seen, f"{app.name} health-checked through its sidecar", broken=m.broken)
        yield m
        for ch in m.channels:
            ch.close()
    finally:
        for e in envoys.values():
            e.stop()
        for app in apps.values():
            app.stop()


@pytest.fixture(scope="package")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running_mesh(tmp_path_factory.mktemp("mesh"), load(mesh_topology_dict())) as m:
        yield m


@pytest.fixture
def restore_weights(mesh: Mesh) -> Iterator[None]:
    yield
    mesh.set_weights("scheduler", blue=100, green=0)
    mesh.set_weights("executor", blue=100, green=0)
