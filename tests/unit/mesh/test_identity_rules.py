"""Every principal the mesh renders matches a whole id, and every Envoy refuses a certificate that is
not one whole SPIFFE id before its allow rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mesh import DEFAULT_TOPOLOGY
from mesh.ca import issue_all
from mesh.policy import gateway_rbac, identity_pattern, load_gateway_policy, load_service_policy, sidecar_rbac
from mesh.render import render
from mesh.topology import WORKLOADS, load
from services.common import mesh_headers, spiffe


def test_every_principal_is_a_whole_value_match() -> None:
    topo = load(DEFAULT_TOPOLOGY)
    rules = [r for svc in topo.services for r in sidecar_rbac(topo, load_service_policy(svc))]
    rules += gateway_rbac(topo, load_gateway_policy(topo))
    for rule in rules:
        for principal in rule.principals:
            assert "authenticated" not in principal, rule.name  # any-of-SANs, DNS and subject included
            if "header" in principal:
                header = principal["header"]
                assert header["name"] in (mesh_headers.PEER, mesh_headers.PRINCIPAL), rule.name
                match = header["string_match"]
                assert set(match) <= {"exact", "safe_regex"}, rule.name  # never prefix/suffix/contains
                if "safe_regex" in match:
                    pattern = match["safe_regex"]["regex"]
                    assert not pattern.startswith(("^", ".*")) and not pattern.endswith((".*", "$")), rule.name
            else:
                assert "sourced_metadata" in principal, rule.name


def test_principal_regexes_admit_only_parsable_ids() -> None:
    topo = load(DEFAULT_TOPOLOGY)
    gate = re.compile(identity_pattern(topo))
    for role_rule in gateway_rbac(topo, load_gateway_policy(topo)):
        for principal in role_rule.principals:
            if "header" not in principal:
                continue
            pattern = re.compile(principal["header"]["string_match"]["safe_regex"]["regex"])
            for text in (
                "spiffe://agentfactory.local/role/admin/user/a",
                "spiffe://agentfactory.local/role/admin/user/a/../../sa/gateway",
                "spiffe://agentfactory.local/role/admin/user/a,spiffe://agentfactory.local/role/viewer/user/b",
                "spiffe://agentfactory.local/role/admin/user/%61",
            ):
                if pattern.fullmatch(text):
                    assert spiffe.parse_or_none(text) is not None and gate.fullmatch(text)
    for workload in WORKLOADS:
        assert gate.fullmatch(topo.spiffe_id(workload))


def _inbound_filters(doc: dict[str, Any]) -> list[dict[str, Any]]:
    listener = doc["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["http_filters"]


def test_every_envoy_gates_identity_before_its_allow_rules(tmp_path: Path) -> None:
    topo = load(DEFAULT_TOPOLOGY)
    issue_all(topo, tmp_path / "certs")
    configs = render(topo, certs_dir=tmp_path / "certs", out_dir=tmp_path / "out")
    assert set(configs) == {*topo.envoy_ids()}
    for envoy_id, path in configs.items():
        filters = _inbound_filters(yaml.safe_load(Path(path).read_text()))
        rbacs = [f["typed_config"] for f in filters if f["name"] == "envoy.filters.http.rbac"]
        assert [r["rules"]["action"] for r in rbacs] == ["DENY", "ALLOW"], envoy_id
        gate = rbacs[0]
        assert gate["rules_stat_prefix"] == "identity_gate."
        (policy,) = gate["rules"]["policies"].values()
        assert identity_pattern(topo) in yaml.safe_dump(policy, width=10_000), envoy_id
        names = [f["name"] for f in filters]
        # Whatever sets the SAN header runs before the gate reads it.
        assert names.index("envoy.filters.http.header_mutation") < names.index("envoy.filters.http.rbac"), envoy_id
