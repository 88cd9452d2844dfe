"""Changes a running mesh takes without restarting anything: blue/green weight shifts (file-based
RDS), certificate rotation (file-based SDS), and fault injection (runtime via admin).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator

import grpc
import pytest
from cryptography import x509

from mesh import chaos
from mesh.ca import rotate, workload_dir
from mesh.methods import contracts
from tests.harness import eventually
from tests.integration.mesh.conftest import Mesh, peer_cert
from tests.integration.mesh.tinyapp import call

GET_AGENT = contracts()["scheduler"]["GetAgent"]
RUN = contracts()["executor"]["Run"]
GET_TEMPLATE = contracts()["registry"]["GetTemplate"]


def _served_by(channel: grpc.Channel, method: object, n: int, md: list[tuple[str, str]]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(n):
        status, trailers = call(channel, method, metadata=md)  # type: ignore[arg-type]
        counts[trailers.get("x-served-by", status.name) if status == grpc.StatusCode.OK else status.name] += 1
    return counts


class Hammer:
    """Calls in a loop on another thread and counts failures, to show a change drops nothing."""

    def __init__(self, channel: grpc.Channel, method: object, md: list[tuple[str, str]]) -> None:
        self.channel, self.method, self.md = channel, method, md
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            status, _ = call(self.channel, self.method, metadata=self.md)  # type: ignore[arg-type]
            if status == grpc.StatusCode.OK:
                self.ok += 1
            else:
                self.failures.append(status.name)

    def more(self, n: int = 20) -> None:
        """Let at least ``n`` more calls complete (so the load overlaps the change just made)."""
        target = self.ok + len(self.failures) + n
        # Each call ends (at its own deadline at worst), so the count moves unless the thread died.
        stalled = lambda: None if self._thread.is_alive() else "the load thread ended"  # noqa: E731
        eventually(lambda: self.ok + len(self.failures) >= target, f"{n} more background calls", broken=stalled)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _pids(mesh: Mesh) -> dict[str, int]:
    return {eid: e.pid for eid, e in mesh.envoys.items()}


@pytest.mark.usefixtures("restore_weights")
def test_scheduler_weights_shift_live_without_errors(mesh: Mesh) -> None:
    pids = _pids(mesh)
    channel = mesh.gateway(mesh.client_creds("operator"))
    assert _served_by(channel, GET_AGENT, 40, []) == {"scheduler-blue": 40}
    with Hammer(mesh.gateway(mesh.client_creds("operator")), GET_AGENT, []) as hammer:
        hammer.more()
        mesh.set_weights("scheduler", blue=0, green=100)
        hammer.more()
        after = _served_by(channel, GET_AGENT, 40, [])
        mesh.set_weights("scheduler", blue=100, green=0)
        hammer.more()
    assert after == {"scheduler-green": 40}
    assert hammer.failures == [], f"calls failed during a live weight shift: {collections.Counter(hammer.failures)}"
    assert _pids(mesh) == pids, "an Envoy was restarted"


@pytest.mark.usefixtures("restore_weights")
def test_ninety_ten_split_lands_within_three_percent(mesh: Mesh) -> None:
    mesh.set_weights("scheduler", blue=90, green=10)
    n = 2000  # +-3 % is > 4 standard deviations at n=2000, so this does not flake
    counts = _served_by(mesh.gateway(mesh.client_creds("operator")), GET_AGENT, n, [])
    assert set(counts) == {"scheduler-blue", "scheduler-green"}, counts
    assert abs(counts["scheduler-green"] / n - 0.10) <= 0.03, counts


@pytest.mark.usefixtures("restore_weights")
def test_executor_weights_shift_in_every_scheduler_sidecar(mesh: Mesh) -> None:
    blue = {"executor-blue", "executor-blue-2"}
    for scheduler in ("scheduler-blue", "scheduler-green"):
        counts = _served_by(mesh.outbound(scheduler, "executor"), RUN, 30, [])
        assert set(counts) <= blue, counts
    mesh.set_weights("executor", blue=0, green=100)
    for scheduler in ("scheduler-blue", "scheduler-green"):
        assert _served_by(mesh.outbound(scheduler, "executor"), RUN, 30, []) == {"executor-green": 30}


def test_weights_state_survives_a_rerender(mesh: Mesh, restore_weights: None) -> None:
    from mesh.render import current_weights, render

    mesh.set_weights("executor", blue=30, green=70)
    render(mesh.topo, certs_dir=mesh.certs, out_dir=mesh.out)
    assert current_weights(mesh.topo, mesh.out)["executor"] == {"blue": 30, "green": 70}


def _serial(cert: x509.Certificate) -> str:
    return f"{cert.serial_number:x}"


def _file_serial(mesh: Mesh, instance_id: str) -> str:
    return _serial(x509.load_pem_x509_certificate((workload_dir(mesh.certs, instance_id) / "cert.pem").read_bytes()))


@pytest.fixture
def gateway_to_registry(mesh: Mesh) -> Iterator[grpc.Channel]:
    yield mesh.inbound("registry", mesh.workload_creds("gateway"))


def test_certificate_rotation_is_picked_up_live(mesh: Mesh, gateway_to_registry: grpc.Channel) -> None:
    pids = _pids(mesh)
    registry = mesh.topo.instance("registry")
    old_served = _serial(peer_cert(registry.inbound_addr, "registry", mesh.certs, "gateway"))
    assert old_served == _file_serial(mesh, "registry")
    old_client = _file_serial(mesh, "scheduler-blue")
    assert old_client in mesh.admin("scheduler-blue").cert_serials()
    # A connection opened before the rotation...
    assert call(gateway_to_registry, GET_TEMPLATE)[0] == grpc.StatusCode.OK

    with Hammer(mesh.outbound("scheduler-blue", "registry"), GET_TEMPLATE, []) as hammer:
        hammer.more()
        rotated = rotate(mesh.topo, mesh.certs, ["registry", "scheduler-blue"])
        assert rotated == ["registry", "scheduler-blue"]
        new_served = _file_serial(mesh, "registry")
        assert new_served != old_served
        # ...new handshakes get the new certificate (server side)...
        eventually(
            lambda: _serial(peer_cert(registry.inbound_addr, "registry", mesh.certs, "gateway")) == new_served,
            "the registry sidecar serving its new certificate",
            broken=mesh.broken,
        )
        # ...and the scheduler's sidecar presents its new one to upstreams (client side).
        new_client = _file_serial(mesh, "scheduler-blue")
        eventually(
            lambda: new_client in mesh.admin("scheduler-blue").cert_serials(),
            "the scheduler sidecar presenting its new certificate",
            broken=mesh.broken,
        )
        hammer.more()
    # ...keeps working, as do new connections, and nothing dropped meanwhile.
    assert call(gateway_to_registry, GET_TEMPLATE)[0] == grpc.StatusCode.OK
    assert call(mesh.inbound("registry", mesh.workload_creds("gateway")), GET_TEMPLATE)[0] == grpc.StatusCode.OK
    assert hammer.failures == [], collections.Counter(hammer.failures)
    assert _pids(mesh) == pids, "an Envoy was restarted"


def test_fault_injection_is_off_until_enabled_at_runtime(mesh: Mesh) -> None:
    admin = mesh.admin("registry")
    app = mesh.app_for("registry")
    channel = mesh.inbound("registry", mesh.workload_creds("gateway"))
    assert call(channel, GET_TEMPLATE)[0] == grpc.StatusCode.OK
    try:
        chaos.abort(admin, 100, grpc_status=14)
        before = app.seen(GET_TEMPLATE.path)
        assert call(channel, GET_TEMPLATE)[0] == grpc.StatusCode.UNAVAILABLE
        assert app.seen(GET_TEMPLATE.path) == before, "an aborted call reached the app"
        chaos.off(admin)
        chaos.delay(admin, 100, ms=300)
        status, _ = call(channel, GET_TEMPLATE, timeout=0.1)
        assert status == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        chaos.off(admin)
    assert call(channel, GET_TEMPLATE)[0] == grpc.StatusCode.OK
