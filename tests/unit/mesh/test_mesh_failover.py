"""The shipped topology lets a dead executor leave rotation: failover priorities, retries that reach
them, an ejection limit one host can pass, and keepalive PINGs that find a stopped peer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh import DEFAULT_TOPOLOGY
from mesh.topology import TopologyError, load
from tests.rendered_mesh import Rendered


def _clusters(rendered: Rendered, envoy_id: str) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(rendered.configs[envoy_id].read_text())
    return {c["name"]: c for c in doc["static_resources"]["clusters"]}


def _priorities(cluster: dict[str, Any]) -> list[tuple[int, list[str]]]:
    return [
        (group.get("priority", 0), [ep["endpoint"]["hostname"] for ep in group["lb_endpoints"]])
        for group in cluster["load_assignment"]["endpoints"]
    ]


@pytest.mark.parametrize("caller", ["scheduler-blue", "scheduler-green", "gateway"])
def test_each_executor_color_falls_back_to_the_other(rendered: Rendered, caller: str) -> None:
    clusters = _clusters(rendered, caller)
    assert _priorities(clusters["executor-blue"]) == [(0, ["executor-blue"]), (1, ["executor-green"])]
    assert _priorities(clusters["executor-green"]) == [(0, ["executor-green"]), (1, ["executor-blue"])]
    for name in ("executor-blue", "executor-green"):
        # One host of two may be ejected: 50 % of the cluster, within max_ejection_percent.
        assert clusters[name]["outlier_detection"]["max_ejection_percent"] >= 50


def test_stateful_colors_never_fall_back(rendered: Rendered) -> None:
    # A scheduler color owns its journal: a call pinned to it must not land on the other color.
    clusters = _clusters(rendered, "gateway")
    assert _priorities(clusters["scheduler-blue"]) == [(0, ["scheduler-blue"])]
    assert _priorities(clusters["registry"]) == [(0, ["registry"])]


def test_executor_retries_reach_the_fallback_priority(rendered: Rendered) -> None:
    doc = yaml.safe_load((rendered.out / "scheduler-blue" / "rds" / "outbound_executor.yaml").read_text())
    retried = [r for r in doc["resources"][0]["virtual_hosts"][0]["routes"] if "retry_policy" in r["route"]]
    assert any(r["name"].startswith("agentfactory.executor.v1.ExecutorService/Run") for r in retried)
    for route in retried:
        policy = route["route"]["retry_policy"]
        assert policy["retry_priority"]["name"] == "envoy.retry_priorities.previous_priorities", route["name"]
    registry = yaml.safe_load((rendered.out / "scheduler-blue" / "rds" / "outbound_registry.yaml").read_text())
    for route in registry["resources"][0]["virtual_hosts"][0]["routes"]:
        assert "retry_priority" not in route["route"].get("retry_policy", {}), route["name"]


def test_sidecars_ping_their_app_and_their_peers(rendered: Rendered) -> None:
    topo = rendered.topo
    want = {"interval": topo.resilience["keepalive_interval"], "timeout": topo.resilience["keepalive_timeout"]}
    for name, cluster in _clusters(rendered, "executor-blue").items():
        if name == "otlp_collector":
            continue
        h2 = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        assert h2["explicit_http_config"]["http2_protocol_options"]["connection_keepalive"] == want, name


def test_the_apps_accept_the_sidecars_ping_interval() -> None:
    from services.common.server import SERVER_OPTIONS

    topo = load(DEFAULT_TOPOLOGY)
    interval_ms = float(topo.resilience["keepalive_interval"].rstrip("s")) * 1000
    assert dict(SERVER_OPTIONS)["grpc.http2.min_ping_interval_without_data_ms"] < interval_ms


def test_failover_needs_two_colors(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    raw["services"]["registry"]["failover"] = True
    with pytest.raises(TopologyError, match="failover needs at least two colors"):
        load(raw)
