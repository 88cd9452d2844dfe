"""Resilience behaviour of the sidecars, observed on real Envoys.

The test topology shortens the timeouts (stream idle 1.5 s, unary cap 1.5 s) so each
behaviour shows in a couple of seconds; the production values are in mesh/topology.yaml.
"""

from __future__ import annotations

import time

import grpc

from mesh import chaos
from mesh.methods import contracts
from tests.integration.mesh.conftest import Mesh
from tests.integration.mesh.tinyapp import call, wait_until

REG = contracts()["registry"]
RUN = contracts()["executor"]["Run"]


def _timed(channel: grpc.Channel, method: object, **kw: object) -> tuple[grpc.StatusCode, float]:
    start = time.monotonic()
    status, _ = call(channel, method, **kw)  # type: ignore[arg-type]
    return status, time.monotonic() - start


def test_unary_call_without_deadline_is_capped(mesh: Mesh) -> None:
    # No grpc-timeout from the client: the route's max_stream_duration (1.5 s here) applies.
    status, took = _timed(
        mesh.outbound("executor-blue", "registry"),
        REG["GetTemplate"],
        timeout=None,
        metadata=[("x-test-sleep-ms", "2500")],
    )
    assert status == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 1.3 < took < 2.4


def test_client_grpc_timeout_is_honoured_beyond_the_default_cap(mesh: Mesh) -> None:
    # A client that asks for 5 s gets 5 s (up to grpc_timeout_max), not the 1.5 s default cap.
    status, took = _timed(
        mesh.outbound("executor-blue", "registry"),
        REG["GetTemplate"],
        timeout=5,
        metadata=[("x-test-sleep-ms", "2500")],
    )
    assert status == grpc.StatusCode.OK
    assert took >= 2.4


def test_long_lived_watch_survives_quiet_periods(mesh: Mesh) -> None:
    # 2.5 s without a message is longer than the stream idle timeout (1.5 s), but Watch* routes
    # carry their own long idle timeout and no duration cap.
    status, took = _timed(
        mesh.outbound("executor-blue", "registry"),
        REG["WatchTemplates"],
        timeout=10,
        metadata=[("x-test-gap-ms", "2500")],
    )
    assert status == grpc.StatusCode.OK
    assert took >= 2.4


def test_ordinary_stream_that_goes_quiet_is_reset(mesh: Mesh) -> None:
    # The same gap on a bounded stream (FetchModule) hits the stream idle timeout on purpose.
    status, took = _timed(
        mesh.outbound("executor-blue", "registry"), REG["FetchModule"], timeout=10, metadata=[("x-test-gap-ms", "2500")]
    )
    assert status != grpc.StatusCode.OK
    assert took < 2.4


def _stat(mesh: Mesh, envoy_id: str, name: str) -> int:
    return mesh.admin(envoy_id).stats(name).get(name, 0)


def test_resource_exhausted_executor_is_retried_on_another_host(mesh: Mesh) -> None:
    # executor-blue answers "full" (RESOURCE_EXHAUSTED) to everything; the scheduler's sidecar
    # retries Run on executor-blue-2, so the scheduler app never sees a refusal.
    retries = "cluster.executor-blue.upstream_rq_retry"
    before = _stat(mesh, "scheduler-blue", retries)
    try:
        chaos.abort(mesh.admin("executor-blue"), 100, grpc_status=8)
        results = [call(mesh.outbound("scheduler-blue", "executor"), RUN) for _ in range(20)]
    finally:
        chaos.off(mesh.admin("executor-blue"))
    assert [s for s, _ in results] == [grpc.StatusCode.OK] * 20
    assert {t["x-served-by"] for _, t in results} == {"executor-blue-2"}
    assert _stat(mesh, "scheduler-blue", retries) > before


def test_non_idempotent_methods_are_never_retried(mesh: Mesh) -> None:
    retries = "cluster.registry.upstream_rq_retry"
    channel = mesh.gateway(mesh.client_creds("publisher"))
    try:
        chaos.abort(mesh.admin("registry"), 100, grpc_status=14)
        before = _stat(mesh, "gateway", retries)
        assert call(channel, REG["DeprecateTemplate"])[0] == grpc.StatusCode.UNAVAILABLE
        assert _stat(mesh, "gateway", retries) == before, "a non-idempotent call was retried"
        assert call(channel, REG["GetTemplate"])[0] == grpc.StatusCode.UNAVAILABLE
        assert _stat(mesh, "gateway", retries) == before + 2, "an idempotent call was not retried twice"
    finally:
        chaos.off(mesh.admin("registry"))


def test_failing_executor_is_ejected(mesh: Mesh) -> None:
    # UNAVAILABLE is a gateway failure: three in a row eject the host (Envoy's default would
    # neither count them nor allow ejecting one of two hosts: max_ejection_percent is 10 %).
    ejected = "cluster.executor-blue.outlier_detection.ejections_enforced_consecutive_gateway_failure"
    before = _stat(mesh, "scheduler-green", ejected)
    try:
        chaos.abort(mesh.admin("executor-blue"), 100, grpc_status=14)
        results = [call(mesh.outbound("scheduler-green", "executor"), RUN)[0] for _ in range(20)]
        assert wait_until(lambda: _stat(mesh, "scheduler-green", ejected) > before, 5)
    finally:
        chaos.off(mesh.admin("executor-blue"))
    # Retries on the other host hid every failure from the caller meanwhile.
    assert results == [grpc.StatusCode.OK] * 20
