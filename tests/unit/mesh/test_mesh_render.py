"""Every rendered Envoy config carries the properties the mesh promises (checked on the rendered YAML,
so a template edit cannot silently drop one). The real `envoy --mode validate` of the same configs is
in tests/integration/mesh/test_envoy_validate.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.kubernetes import walk_dicts
from mesh.methods import contracts
from mesh.policy import load_service_policy
from tests.rendered_mesh import Rendered


def _doc(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _routes(rendered: Rendered, envoy_id: str) -> dict[str, dict[str, Any]]:
    out = {}
    for f in sorted((rendered.out / envoy_id / "rds").glob("*.yaml")):
        cfg = _doc(f)["resources"][0]
        out[cfg["name"]] = cfg
    return out


@pytest.mark.parametrize("envoy_id", ["registry", "signer", "executor-blue", "scheduler-green", "gateway"])
def test_admin_is_loopback_only(rendered: Rendered, envoy_id: str) -> None:
    assert _doc(rendered.configs[envoy_id])["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_sidecar_inbound_requires_client_certificates_and_rbac(rendered: Rendered) -> None:
    for inst in rendered.topo.instances():
        doc = _doc(rendered.configs[inst.id])
        inbound = next(li for li in doc["static_resources"]["listeners"] if li["name"] == "inbound")
        chain = inbound["filter_chains"][0]
        tls = chain["transport_socket"]["typed_config"]
        assert tls["require_client_certificate"] is True
        hcm = chain["filters"][0]["typed_config"]
        names = [f["name"] for f in hcm["http_filters"]]
        assert names.index("envoy.filters.http.rbac") < names.index("envoy.filters.http.router")
        rbacs = [f["typed_config"]["rules"] for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.rbac"]
        # The identity gate (DENY: not one whole SPIFFE id) first, then an allow-list: anything unlisted is denied.
        assert [r["action"] for r in rbacs] == ["DENY", "ALLOW"]
        # Outbound listeners are plaintext, so they must bind loopback.
        for li in doc["static_resources"]["listeners"]:
            if li["name"] != "inbound":
                assert li["address"]["socket_address"]["address"] == "127.0.0.1"
                assert "transport_socket" not in li["filter_chains"][0]


# Plaintext loopback clusters: the local app, and the OTLP trace collector (telemetry.otlp).
NOT_MESH = ("local_app", "otlp_collector")


def test_upstream_clusters_pin_the_exact_spiffe_id(rendered: Rendered) -> None:
    for envoy_id, cfg in rendered.configs.items():
        for cluster in _doc(cfg)["static_resources"]["clusters"]:
            if cluster["name"] in NOT_MESH:
                continue
            service = cluster["name"].split("-")[0]
            ctx = cluster["transport_socket"]["typed_config"]["common_tls_context"]
            matchers = ctx["combined_validation_context"]["default_validation_context"]["match_typed_subject_alt_names"]
            assert matchers == [
                {"san_type": "URI", "matcher": {"exact": f"spiffe://agentfactory.local/sa/{service}"}}
            ], envoy_id


def test_upstream_clusters_are_resilient(rendered: Rendered) -> None:
    for cfg in rendered.configs.values():
        for cluster in _doc(cfg)["static_resources"]["clusters"]:
            if cluster["name"] in NOT_MESH:
                continue
            assert cluster["lb_policy"] == "LEAST_REQUEST"
            od = cluster["outlier_detection"]
            assert od["max_ejection_percent"] >= 25
            assert od["consecutive_gateway_failure"] > 0 and od["enforcing_consecutive_gateway_failure"] == 100
            assert "grpc_health_check" in cluster["health_checks"][0]
            thresholds = cluster["circuit_breakers"]["thresholds"][0]
            assert thresholds["retry_budget"]["budget_percent"]["value"] > 0
            assert {"max_connections", "max_pending_requests", "max_requests"} <= set(thresholds)


def test_fault_filter_is_present_but_off(rendered: Rendered) -> None:
    for inst in rendered.topo.instances():
        doc = _doc(rendered.configs[inst.id])
        fault = next(n for n in walk_dicts(doc) if n.get("name") == "envoy.filters.http.fault")["typed_config"]
        assert fault["abort"]["percentage"]["numerator"] == 0
        assert fault["delay"]["percentage"]["numerator"] == 0
        layers = [layer["name"] for layer in doc["layered_runtime"]["layers"]]
        assert "admin" in layers  # so mesh.chaos can turn it on at run time


def test_routes_timeouts_and_retries_follow_the_policy(rendered: Rendered) -> None:
    topo = rendered.topo
    for inst in topo.instances():
        for name, cfg in _routes(rendered, inst.id).items():
            service = inst.service if name == "inbound" else name.removeprefix("outbound_")
            policy = {mp.method.path: mp for mp in load_service_policy(service).all()}
            routes = cfg["virtual_hosts"][0]["routes"]
            assert {r["match"]["path"] for r in routes} == set(policy)
            for r in routes:
                mp, action = policy[r["match"]["path"]], r["route"]
                assert action["timeout"] == "0s", "the default 15 s route timeout would cut streams"
                if mp.method.streaming:
                    # The client's own timer ends a stream at its deadline, never a reset by Envoy.
                    assert "max_stream_duration" not in action
                else:
                    assert action["max_stream_duration"]["grpc_timeout_header_max"] == topo.timeouts["grpc_timeout_max"]
                if mp.long_lived:
                    assert action["idle_timeout"] == topo.timeouts["long_lived_idle"]
                retried = "retry_policy" in action
                # Inbound never retries (the caller's sidecar did); outbound retries idempotent calls only.
                assert retried == (name != "inbound" and mp.idempotent), f"{inst.id} {name} {mp.method.path}"
                if retried:
                    assert set(action["retry_policy"]["retry_on"].split(",")) >= {"unavailable", "resource-exhausted"}


def test_blue_green_split_is_weighted_clusters(rendered: Rendered) -> None:
    gateway = _routes(rendered, "gateway")["gateway"]["virtual_hosts"][0]["routes"]
    run_agent = next(
        r for r in gateway if r["match"]["path"].endswith("SchedulerService/RunAgent") and "headers" not in r["match"]
    )
    clusters = run_agent["route"]["weighted_clusters"]["clusters"]
    assert [c["name"] for c in clusters] == ["scheduler-blue", "scheduler-green"]
    assert sum(c["weight"] for c in clusters) == 100
    run = next(
        r
        for r in _routes(rendered, "scheduler-blue")["outbound_executor"]["virtual_hosts"][0]["routes"]
        if r["match"]["path"].endswith("ExecutorService/Run") and "headers" not in r["match"]
    )
    assert [c["name"] for c in run["route"]["weighted_clusters"]["clusters"]] == ["executor-blue", "executor-green"]


def test_a_call_naming_its_color_goes_to_that_color(rendered: Rendered) -> None:
    # The scheduler asks the color that owns an agent this way; operators try a color before a shift.
    tables = [_routes(rendered, "gateway")["gateway"], _routes(rendered, "scheduler-blue")["outbound_scheduler"],
              _routes(rendered, "scheduler-green")["outbound_executor"]]  # fmt: skip
    for table in tables:
        routes = table["virtual_hosts"][0]["routes"]
        for i, r in enumerate(routes):
            if "weighted_clusters" not in r["route"]:
                continue
            service = r["route"]["weighted_clusters"]["clusters"][0]["name"].rsplit("-", 1)[0]
            pinned = [p for p in routes[:i] if p["match"]["path"] == r["match"]["path"]]
            assert [(p["match"]["headers"], p["route"]["cluster"]) for p in pinned] == [
                ([{"name": "x-agentfactory-color", "string_match": {"exact": color}}], f"{service}-{color}")
                for color in ("blue", "green")
            ], r["match"]["path"]
            assert all(p["route"].get("retry_policy") == r["route"].get("retry_policy") for p in pinned)


def test_gateway_authenticates_and_authorises_before_routing(rendered: Rendered) -> None:
    doc = _doc(rendered.configs["gateway"])
    listener = doc["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in hcm["http_filters"]]
    # Identity headers are reset first (a client cannot forge them), then authentication, then RBAC.
    assert names[:3] == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac",
    ]
    assert names[-1] == "envoy.filters.http.router"
    removed = {m.get("remove") for m in hcm["http_filters"][0]["typed_config"]["mutations"]["request_mutations"]}
    assert {"x-agentfactory-principal", "x-agentfactory-jwt-subject", "x-agentfactory-forwarded-by"} <= removed
    jwt = hcm["http_filters"][1]["typed_config"]["providers"]["agentfactory"]
    assert Path(jwt["local_jwks"]["filename"]).exists()
    assert jwt["forward"] is False
    assert jwt["claim_to_headers"] == [{"header_name": "x-agentfactory-jwt-subject", "claim_name": "sub"}]
    routed = {r["match"]["path"] for r in _routes(rendered, "gateway")["gateway"]["virtual_hosts"][0]["routes"]}
    every_method = {m.path for methods in contracts().values() for m in methods.values()}
    assert every_method <= routed
    assert "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" in routed


def test_certificates_come_from_watched_files(rendered: Rendered) -> None:
    for envoy_id in rendered.configs:
        sds = _doc(rendered.out / envoy_id / "sds" / "workload.yaml")["resources"][0]["tls_certificate"]
        cert_dir = Path(sds["watched_directory"]["path"])
        assert (cert_dir / "..data").is_symlink()
        assert Path(sds["certificate_chain"]["filename"]).parent == cert_dir
        for src in walk_dicts(_doc(rendered.configs[envoy_id])):
            if "path_config_source" in src:
                pcs = src["path_config_source"]
                assert Path(pcs["path"]).parent == Path(pcs["watched_directory"]["path"])
