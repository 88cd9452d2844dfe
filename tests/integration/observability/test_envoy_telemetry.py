"""What the topology's `telemetry.otlp` does to the rendered mesh: every Envoy traces with the
OpenTelemetry tracer to the collector (gateway and outbound listeners decide, inbound listeners
follow), every inbound listener and the gateway audit RBAC denials, every service gets
AF_OTLP_ENDPOINT, and `--trace-sink` supervises the receiver. Validated by the real Envoy."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh import DEFAULT_TOPOLOGY
from mesh.ca import issue_all
from mesh.envoy import validate
from mesh.render import render
from mesh.supervisor import render_conf, service_env
from mesh.topology import Topology, TopologyError, load

HCM = "envoy.filters.network.http_connection_manager"


@dataclass(frozen=True)
class Rendered:
    topo: Topology
    configs: dict[str, Path]


def _raw(otlp: str | None) -> dict[str, Any]:
    raw = copy.deepcopy(yaml.safe_load(DEFAULT_TOPOLOGY.read_text()))
    if otlp is None:
        raw.pop("telemetry", None)
    else:
        raw["telemetry"] = {"otlp": otlp}
    return raw


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("telemetry-certs")
    issue_all(load(_raw(None)), root)
    return root


def _render(tmp: Path, certs: Path, otlp: str | None) -> Rendered:
    topo = load(_raw(otlp))
    return Rendered(topo, render(topo, certs_dir=certs, out_dir=tmp / "out"))


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Rendered:
    return _render(tmp_path_factory.mktemp("traced"), certs, "127.0.0.1:4317")


def _hcms(config: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    doc = yaml.safe_load(config.read_text())
    for listener in doc["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                if f["name"] == HCM:
                    yield listener["name"], f["typed_config"]


def _clusters(config: Path) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(config.read_text())
    return {c["name"]: c for c in doc["static_resources"]["clusters"]}


def test_the_repository_topology_traces_to_the_local_sink() -> None:
    assert load(DEFAULT_TOPOLOGY).otlp_endpoint == "127.0.0.1:4317"


def test_every_listener_traces_with_the_opentelemetry_tracer_named_by_envoy_id(traced: Rendered) -> None:
    for envoy_id, config in traced.configs.items():
        listeners = list(_hcms(config))
        assert listeners
        for name, hcm in listeners:
            tracing = hcm["tracing"]
            provider = tracing["provider"]
            assert provider["name"] == "envoy.tracers.opentelemetry"
            assert provider["typed_config"]["service_name"] == envoy_id
            assert provider["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == "otlp_collector"
            # The gateway and the listeners apps call decide; inbound sidecars follow their caller, so
            # health checks between sidecars are never traced.
            expected = 0 if name == "inbound" else 100
            assert tracing["random_sampling"]["value"] == expected, (envoy_id, name)
        collector = _clusters(config)["otlp_collector"]
        assert collector["type"] == "STATIC"
        address = collector["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        assert address["socket_address"] == {"address": "127.0.0.1", "port_value": 4317}
        doc = yaml.safe_load(config.read_text())
        assert doc["layered_runtime"]["layers"][0]["static_layer"]["tracing.opentelemetry.flush_interval_ms"] == 1000


def test_inbound_listeners_and_the_gateway_audit_rbac_denials(traced: Rendered) -> None:
    for envoy_id, config in traced.configs.items():
        for name, hcm in _hcms(config):
            audit = [
                log
                for log in hcm["access_log"]
                if log["typed_config"]["log_format"]["json_format"].get("logger") == "agentfactory.audit"
            ]
            if name not in ("inbound", "gateway"):
                assert not audit, (envoy_id, name)
                continue
            assert len(audit) == 1, (envoy_id, name)
            expression = audit[0]["filter"]["extension_filter"]["typed_config"]["expression"]
            assert "rbac_access_denied" in expression
            fmt = audit[0]["typed_config"]["log_format"]["json_format"]
            assert fmt["event"] == "rbac_denial" and fmt["outcome"] == "denied"
            assert fmt["actor"] == "%DOWNSTREAM_PEER_URI_SAN%" and fmt["target"] == "%REQ(:PATH)%"
            assert fmt["service"] == envoy_id and fmt["ts"].startswith("%START_TIME")


def test_without_telemetry_nothing_is_traced(tmp_path: Path, certs: Path) -> None:
    plain = _render(tmp_path, certs, None)
    for config in plain.configs.values():
        assert all("tracing" not in hcm for _, hcm in _hcms(config))
        assert "otlp_collector" not in _clusters(config)
    inst = plain.topo.instances()[0]
    assert "AF_OTLP_ENDPOINT" not in service_env(plain.topo, inst, tmp_path)


def test_rendered_configs_pass_envoy_validate(traced: Rendered, tmp_path: Path, certs: Path) -> None:
    # The gateway and one sidecar with every listener kind; tests/integration/mesh/test_envoy_validate.py
    # validates all the rest.
    for envoy_id in ("gateway", "scheduler-blue"):
        assert validate(traced.configs[envoy_id]) is None
    # A collector named by DNS (a Kubernetes Service) is a STRICT_DNS cluster.
    dns = _render(tmp_path, certs, "otel-collector.observability:4317")
    collector = _clusters(dns.configs["registry"])["otlp_collector"]
    assert collector["type"] == "STRICT_DNS"
    assert validate(dns.configs["registry"]) is None


def test_services_export_to_the_topology_endpoint_and_the_sink_is_supervised(traced: Rendered, tmp_path: Path) -> None:
    for inst in traced.topo.instances():
        env = service_env(traced.topo, inst, tmp_path)
        assert env["AF_OTLP_ENDPOINT"] == "127.0.0.1:4317"
    conf = render_conf(traced.topo, out_dir=tmp_path / "out", var_dir=tmp_path / "var", trace_sink=True).read_text()
    assert "[program:trace-sink]" in conf
    assert "-m observability.trace_sink --listen 127.0.0.1:4317" in conf
    assert str(tmp_path / "var" / "traces" / "spans.jsonl") in conf
    without = render_conf(traced.topo, out_dir=tmp_path / "out2", var_dir=tmp_path / "var2").read_text()
    assert "trace-sink" not in without


@pytest.mark.parametrize("endpoint", ["4317", "collector:", ":4317", "host:99999"])
def test_a_malformed_otlp_endpoint_is_refused(endpoint: str) -> None:
    with pytest.raises(TopologyError, match=r"telemetry\.otlp"):
        load(_raw(endpoint))


def _request_logs(config: Path) -> list[dict[str, Any]]:
    """The per-request access logs of every listener (the RBAC audit log has its own CEL filter)."""
    return [
        log
        for _, hcm in _hcms(config)
        for log in hcm["access_log"]
        if "logger" not in log["typed_config"]["log_format"]["json_format"]
    ]


def test_make_run_logs_every_request_and_the_default_only_errors(tmp_path: Path, certs: Path) -> None:
    repo = load(DEFAULT_TOPOLOGY)  # make run's topology
    assert repo.access_log == "all"
    everything = render(repo, certs_dir=certs, out_dir=tmp_path / "all")
    assert all("filter" not in log for c in everything.values() for log in _request_logs(c))
    plain = _render(tmp_path, certs, None)  # no telemetry section: errors only
    assert plain.topo.access_log == "errors"
    for envoy_id, config in plain.configs.items():
        logs = _request_logs(config)
        assert logs, envoy_id
        for log in logs:
            filters = log["filter"]["or_filter"]["filters"]
            assert {"grpc_status_filter": {"statuses": ["OK"], "exclude": True}} in filters
            assert {"response_flag_filter": {}} in filters
    assert validate(plain.configs["gateway"]) is None and validate(plain.configs["scheduler-blue"]) is None


def test_an_unknown_access_log_mode_is_refused() -> None:
    raw = _raw(None)
    raw["telemetry"] = {"access_log": "some"}
    with pytest.raises(TopologyError, match=r"telemetry\.access_log"):
        load(raw)


def test_sampling_percent_is_where_traces_start(tmp_path: Path, certs: Path) -> None:
    raw = _raw("127.0.0.1:4317")
    raw["telemetry"]["sampling_percent"] = 5
    topo = load(raw)
    configs = render(topo, certs_dir=certs, out_dir=tmp_path / "out")
    for envoy_id, config in configs.items():
        for name, hcm in _hcms(config):
            # Inbound listeners follow their caller; the gateway and the outbound listeners decide.
            assert hcm["tracing"]["random_sampling"]["value"] == (0 if name == "inbound" else 5), (envoy_id, name)
    assert validate(configs["gateway"]) is None
    assert load(DEFAULT_TOPOLOGY).trace_sampling_percent == 100  # make run follows every request


@pytest.mark.parametrize("value", [-1, 101, "some"])
def test_a_sampling_percent_outside_0_to_100_is_refused(value: object) -> None:
    raw = _raw("127.0.0.1:4317")
    raw["telemetry"]["sampling_percent"] = value
    with pytest.raises(TopologyError, match=r"telemetry\.sampling_percent"):
        load(raw)
