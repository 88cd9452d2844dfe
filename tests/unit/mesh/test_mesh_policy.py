"""Policies and topologies are checked at render time, against the protos."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh import DEFAULT_TOPOLOGY
from mesh.methods import contracts
from mesh.policy import POLICY_DIR, PolicyError, load_gateway_policy, load_service_policy, sidecar_rbac
from mesh.topology import TopologyError, load


@pytest.fixture
def raw() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(DEFAULT_TOPOLOGY.read_text()))


def test_contracts_are_read_from_the_protos() -> None:
    c = contracts()
    assert set(c) == {"registry", "signer", "executor", "scheduler"}
    publish = c["registry"]["PublishTemplate"]
    assert publish.path == "/agentfactory.registry.v1.RegistryService/PublishTemplate"
    assert publish.client_streaming and not publish.server_streaming
    assert c["scheduler"]["WatchAgent"].server_streaming


@pytest.mark.parametrize("service", ["registry", "signer", "executor", "scheduler"])
def test_every_policy_covers_exactly_the_contract(service: str) -> None:
    policy = load_service_policy(service)
    assert set(policy.methods) == set(contracts()[service])


def _policy_copy(tmp_path: Path, service: str, edit: Any) -> Path:
    doc = yaml.safe_load((POLICY_DIR / f"{service}.yaml").read_text())
    edit(doc)
    (tmp_path / f"{service}.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def test_policy_missing_a_method_is_an_error(tmp_path: Path) -> None:
    d = _policy_copy(tmp_path, "signer", lambda doc: doc["methods"].pop("Sign"))
    with pytest.raises(PolicyError, match="missing from policy \\['Sign'\\]"):
        load_service_policy("signer", d)


def test_policy_naming_an_unknown_method_is_an_error(tmp_path: Path) -> None:
    d = _policy_copy(tmp_path, "signer", lambda doc: doc["methods"].update(Sing={"callers": ["registry"]}))
    with pytest.raises(PolicyError, match="not in the protos \\['Sing'\\]"):
        load_service_policy("signer", d)


def test_policy_naming_an_unknown_caller_is_an_error(tmp_path: Path) -> None:
    d = _policy_copy(tmp_path, "signer", lambda doc: doc["methods"]["Sign"].update(callers=["regsitry"]))
    with pytest.raises(PolicyError, match="unknown callers"):
        load_service_policy("signer", d)


def test_sidecar_rbac_names_exact_principals() -> None:
    topo = load(DEFAULT_TOPOLOGY)
    rules = {r.name: r for r in sidecar_rbac(topo, load_service_policy("signer"))}
    sign = rules["signer<-registry"]
    assert sign.paths == ("/agentfactory.signer.v1.SignerService/Sign",)
    # The whole comma-joined URI SAN list, matched exactly: one SAN, this id (never `authenticated`,
    # which admits a certificate if any of its SANs matches).
    assert sign.principals == (
        {
            "header": {
                "name": "x-agentfactory-peer",
                "string_match": {"exact": "spiffe://agentfactory.local/sa/registry"},
            }
        },
    )


def test_gateway_roles_expand() -> None:
    topo = load(DEFAULT_TOPOLOGY)
    roles = {role: {m.path.rsplit("/", 1)[1] for m in ms} for role, ms in load_gateway_policy(topo).items()}
    assert "RotateKey" in roles["admin"] and "RotateKey" not in roles["operator"]
    assert {"PublishTemplate", "DeprecateTemplate", "FetchModule"} <= roles["publisher"]
    assert {"CreateAgent", "CancelAgent", "RunAgent"} <= roles["operator"]
    assert roles["viewer"] == {
        "GetTemplate",
        "ListTemplates",
        "WatchTemplates",
        "GetAgent",
        "ListAgents",
        "WatchAgent",
        "GetPublicKeys",
        "WatchPublicKeys",
        "GetCapacity",
        "FetchModule",  # `afctl templates verify` is a read
        "Verify",
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["services"]["signer"]["instances"][0]["ports"].update(app=7101), "already used"),
        (lambda r: r["gateway"].update(admin=7401), "already used"),
        (lambda r: r["services"]["signer"]["instances"][0].update(host="signer.local"), "not an IP"),
        (lambda r: r["weights"]["scheduler"].update(blue=60), "total 100"),
        (lambda r: r["weights"].pop("executor"), "has no weights"),
        (lambda r: r["services"]["registry"].update(upstreams=["signer", "vault"]), "unknown upstream"),
        (lambda r: r["services"]["registry"]["instances"][0].update(outbound={}), "must match upstreams"),
        (lambda r: r["timeouts"].update(stream_idle="5m"), "not an Envoy duration"),
        (lambda r: r["clients"].append({"name": "eve", "role": "root"}), "unknown role"),
    ],
)
def test_bad_topologies_are_refused(raw: dict[str, Any], edit: Any, message: str) -> None:
    edit(raw)
    with pytest.raises(TopologyError, match=message):
        load(raw)


def test_default_topology_is_valid() -> None:
    topo = load(DEFAULT_TOPOLOGY)
    assert [i.id for i in topo.instances()] == [
        "registry",
        "signer",
        "executor-blue",
        "executor-green",
        "scheduler-blue",
        "scheduler-green",
    ]
    assert topo.services["executor"].clusters().keys() == {"executor-blue", "executor-green"}
    assert topo.services["registry"].clusters().keys() == {"registry"}
