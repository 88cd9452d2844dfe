"""The chart's Envoy configs: generated from the mesh templates (never stale), and every one of
them, as the pods would see it (ConfigMap and Secret volumes at their mount paths), passes the
real `envoy --mode validate` with its route files inlined too."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh import DEFAULT_TOPOLOGY
from mesh.envoy import validate, validate_all
from mesh.kubernetes import DEFAULT_OUT, kubernetes_topology, render_files, stale
from mesh.topology import TopologyError, load
from tests.integration.helm.conftest import NAMESPACE, Rendered, render

TOPO = load(DEFAULT_TOPOLOGY)


def test_committed_envoy_files_match_the_mesh_templates() -> None:
    problems = stale(render_files(TOPO), DEFAULT_OUT)
    assert not problems, "stale: run `make helm-files`\n" + "\n".join(problems)


def test_staleness_check_sees_an_edit(tmp_path: Path) -> None:
    files = render_files(TOPO)
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert stale(files, tmp_path) == []
    target = tmp_path / "envoy" / "signer" / "envoy.yaml"
    target.write_text(
        target.read_text().replace("require_client_certificate: true", "require_client_certificate: false")
    )
    (tmp_path / "envoy" / "old").mkdir()
    (tmp_path / "envoy" / "old" / "envoy.yaml").write_text("{}")
    problems = stale(files, tmp_path)
    assert len(problems) == 2 and any("no longer generated" in p for p in problems)


def _materialize(rendered: Rendered, deploy: dict[str, Any], root: Path) -> Path:
    """Write the envoy container's volumes (ConfigMaps, Secrets) under ``root`` at their mount paths."""
    pod = deploy["spec"]["template"]["spec"]
    envoy = next(c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == "envoy")
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in envoy["volumeMounts"]:
        vol = volumes[mount["name"]]
        if "configMap" in vol:
            data = rendered.get("ConfigMap", vol["configMap"]["name"])["data"]
            items = vol["configMap"].get("items")
        else:
            secret = rendered.get("Secret", vol["secret"]["secretName"])
            data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
            items = vol["secret"].get("items")
        mapping = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for key, path in mapping.items():
            # Configs name absolute /etc/envoy paths: point them into this sandbox instead.
            (target / path).write_text(data[key].replace("/etc/envoy/", f"{root}/etc/envoy/"))
    args = envoy["args"]
    return root / args[args.index("--config-path") + 1].lstrip("/")


def test_every_rendered_envoy_config_passes_envoy_validate(rendered: Rendered, tmp_path: Path) -> None:
    configs = [
        _materialize(rendered, deploy, tmp_path / deploy["metadata"]["name"])
        for deploy in rendered.of_kind("Deployment")
    ]
    assert len(configs) == len(TOPO.envoy_ids())
    failures = validate_all(configs, workers=2)  # each Envoy takes inotify instances; hosts cap them (128)
    assert not failures, "\n\n".join(f"{p}:\n{e}" for p, e in failures.items())


def test_validation_reads_the_rendered_route_files(rendered: Rendered, tmp_path: Path) -> None:
    # Guard for the guard: a broken route in the ConfigMap must fail validation.
    broken = copy.deepcopy(rendered)
    cm = broken.get("ConfigMap", "scheduler-blue-routes")
    cm["data"]["outbound_executor.yaml"] = cm["data"]["outbound_executor.yaml"].replace("weight: ", "weight: -", 1)
    config = _materialize(broken, broken.get("Deployment", "scheduler-blue"), tmp_path)
    assert validate(config) is not None


def _bootstrap(rendered: Rendered, workload: str) -> dict[str, Any]:
    return yaml.safe_load(rendered.get("ConfigMap", f"{workload}-envoy")["data"]["envoy.yaml"])


def test_sidecars_dial_headless_services_by_dns_and_keep_loopback_private(rendered: Rendered) -> None:
    for inst in TOPO.instances():
        doc = _bootstrap(rendered, inst.id)
        assert doc["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
        listeners = {li["name"]: li["address"]["socket_address"] for li in doc["static_resources"]["listeners"]}
        assert listeners.pop("inbound") == {"address": "0.0.0.0", "port_value": inst.inbound}
        assert listeners.pop("probe")["address"] == "0.0.0.0"
        assert all(a["address"] == "127.0.0.1" for a in listeners.values()), inst.id  # outbound: plaintext
        for cluster in doc["static_resources"]["clusters"]:
            if cluster["name"] in ("local_app", "envoy_admin", "otlp_collector"):
                continue
            # STRICT_DNS (every pod of the headless Service is a host), via the DNS cluster extension.
            dns = cluster["cluster_type"]["typed_config"]
            assert "type" not in cluster and dns["all_addresses_in_single_endpoint"] is False, inst.id
            for ep in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]:
                addr = ep["endpoint"]["address"]["socket_address"]["address"]
                assert addr == f"{cluster['name']}.{NAMESPACE}.svc.cluster.local"


def test_probe_listener_serves_only_health_and_readiness(rendered: Rendered) -> None:
    for workload in [*(i.id for i in TOPO.instances()), TOPO.gateway.id]:
        doc = _bootstrap(rendered, workload)
        probe = next(li for li in doc["static_resources"]["listeners"] if li["name"] == "probe")
        hcm = probe["filter_chains"][0]["filters"][0]["typed_config"]
        routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        paths = {r["match"]["path"]: r["route"]["cluster"] for r in routes}
        expected = {"/ready": "envoy_admin", "/stats/prometheus": "envoy_admin"}
        if workload != TOPO.gateway.id:
            expected["/grpc.health.v1.Health/Check"] = "local_app"
        assert paths == expected, workload
        assert "transport_socket" not in probe["filter_chains"][0]


def test_kubernetes_render_keeps_the_mesh_policy() -> None:
    # Same RBAC as the local mesh: the templates are shared, only addresses and paths differ.
    from mesh.policy import load_service_policy, sidecar_rbac

    files = render_files(TOPO)
    doc = yaml.safe_load(files["envoy/executor-blue/envoy.yaml"])
    hcm = next(li for li in doc["static_resources"]["listeners"] if li["name"] == "inbound")["filter_chains"][0]
    filters = hcm["filters"][0]["typed_config"]["http_filters"]
    # The identity gate (DENY) comes first; the mesh policy is the allow-list after it.
    allow = [f["typed_config"]["rules"] for f in filters if f["name"] == "envoy.filters.http.rbac"][-1]
    assert allow["action"] == "ALLOW"
    rbac = allow["policies"]
    assert set(rbac) == {r.name for r in sidecar_rbac(TOPO, load_service_policy("executor"))}


def test_topology_accepts_dns_hosts_only_with_a_bind_address() -> None:
    k8s = kubernetes_topology(TOPO)
    inst = k8s.instance("registry")
    assert inst.dns and inst.listen_host == "0.0.0.0"
    assert not TOPO.instance("registry").dns
    raw = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    raw["services"]["signer"]["instances"][0].update(host="signer.agentfactory.svc.cluster.local", bind="0.0.0.0")
    assert load(raw).instance("signer").dns
    for bad, message in (
        ({"host": "signer.local"}, "needs `bind`"),
        ({"host": "signer.local", "bind": "any"}, "not an IP"),
        ({"host": "bad..name", "bind": "0.0.0.0"}, "neither an IP"),
    ):
        raw = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
        raw["services"]["signer"]["instances"][0].update(bad)
        with pytest.raises(TopologyError, match=message):
            load(raw)


def _sampling(bootstrap: dict[str, Any]) -> dict[str, float]:
    """listener name -> the percent of requests it starts a trace for."""
    return {
        listener["name"]: chain["filters"][0]["typed_config"]["tracing"]["random_sampling"]["value"]
        for listener in bootstrap["static_resources"]["listeners"]
        for chain in listener["filter_chains"]
        if "tracing" in chain["filters"][0].get("typed_config", {})
    }


def test_trace_sampling_comes_from_values(rendered: Rendered) -> None:
    gateway = _sampling(_bootstrap(rendered, TOPO.gateway.id))
    sidecar = _sampling(_bootstrap(rendered, "scheduler-blue"))
    assert set(gateway.values()) == {10}  # values.yaml: a cluster samples
    assert sidecar["inbound"] == 0 and {v for k, v in sidecar.items() if k != "inbound"} == {10}
    proc = render(rendered.values, "--set", "tracing.samplingPercent=2.5")
    assert proc.returncode == 0, proc.stderr
    docs = Rendered(rendered.profile, rendered.values, [d for d in yaml.safe_load_all(proc.stdout) if d])
    assert set(_sampling(_bootstrap(docs, TOPO.gateway.id)).values()) == {2.5}
