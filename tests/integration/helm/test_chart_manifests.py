"""Every values profile renders manifests that pass the Kubernetes JSON schemas of the pinned
version, `helm lint --strict`, and the chart's promises: hardened containers, probes, deny-by-default
NetworkPolicies that follow the mesh topology, only the gateway exposed, PDBs, HPAs, weights."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mesh import DEFAULT_TOPOLOGY
from mesh.topology import load
from tests.integration.helm.conftest import CHART, KUBE_VERSION, PROFILES, Rendered, helm, render

TOPO = load(DEFAULT_TOPOLOGY)
WORKLOADS = {inst.id for inst in TOPO.instances()} | {TOPO.gateway.id}


def _pod(deploy: dict[str, Any]) -> dict[str, Any]:
    return deploy["spec"]["template"]["spec"]


def _containers(deploy: dict[str, Any]) -> Iterator[dict[str, Any]]:
    pod = _pod(deploy)
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_helm_lint_strict(profile: str, certs_values: Path) -> None:
    for values in ([*PROFILES[profile]], [*PROFILES[profile], certs_values]):
        args: list[str | Path] = ["lint", "--strict", "--kube-version", KUBE_VERSION, CHART]
        for v in values:
            args += ["-f", v]
        proc = helm(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_manifest_passes_the_kubernetes_schema(rendered: Rendered) -> None:
    errors = []
    for doc in rendered.docs:
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not errors, "\n".join(errors)


def test_schema_validation_catches_a_broken_manifest(rendered: Rendered) -> None:
    # Guard for the guard: strict validation must refuse an unknown field and a wrong type.
    deploy = copy.deepcopy(rendered.get("Deployment", "registry"))
    _pod(deploy)["containers"][0]["readinessProbe"]["grpc"]["port"] = "probe"  # grpc probes need a number
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, KUBE_VERSION, strict=True)
    deploy = copy.deepcopy(rendered.get("Deployment", "registry"))
    _pod(deploy)["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, KUBE_VERSION, strict=True)


def test_one_deployment_per_workload_each_with_its_envoy(rendered: Rendered) -> None:
    deploys = {d["metadata"]["name"]: d for d in rendered.of_kind("Deployment")}
    assert set(deploys) == WORKLOADS
    for name, deploy in deploys.items():
        pod = _pod(deploy)
        if name == TOPO.gateway.id:
            assert [c["name"] for c in pod["containers"]] == ["envoy"]
            continue
        # A native sidecar: starts (and is ready) before the app, stops after it.
        assert [(c["name"], c.get("restartPolicy")) for c in pod["initContainers"]] == [("envoy", "Always")]
        assert [c["name"] for c in pod["containers"]] == ["app"]
        envoy = pod["initContainers"][0]
        assert envoy["image"].split(":")[0].endswith("agentfactory/envoy")
        assert envoy["args"][:2] == ["--config-path", "/etc/envoy/bootstrap/envoy.yaml"]
        assert pod["containers"][0]["image"].split(":")[0].endswith(f"agentfactory/{name.split('-')[0]}")


def test_every_container_is_hardened(rendered: Rendered) -> None:
    for deploy in rendered.of_kind("Deployment"):
        pod = _pod(deploy)
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in _containers(deploy):
            where = f"{deploy['metadata']['name']}/{c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"], where
            for m in c.get("volumeMounts", []):
                assert "subPath" not in m, f"{where}: subPath mounts never see the kubelet's ..data swaps"


def test_every_container_has_probes(rendered: Rendered) -> None:
    mesh = yaml.safe_load((CHART / "files" / "mesh.yaml").read_text())
    for deploy in rendered.of_kind("Deployment"):
        name = deploy["metadata"]["name"]
        for c in _containers(deploy):
            assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(c), f"{name}/{c['name']}"
            if c["name"] == "app":
                # Native gRPC probes against the app's health service (relayed by the probe listener).
                assert c["livenessProbe"]["grpc"] == {"port": mesh["probePort"]}
                assert c["readinessProbe"]["grpc"] == {
                    "port": mesh["probePort"],
                    "service": mesh["workloads"][name]["grpcService"],
                }
            else:
                assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "probe"}


def test_network_policies_deny_by_default_and_follow_the_topology(rendered: Rendered) -> None:
    deploys = {d["metadata"]["name"]: d for d in rendered.of_kind("Deployment")}
    policies = rendered.of_kind("NetworkPolicy")
    mesh = yaml.safe_load((CHART / "files" / "mesh.yaml").read_text())
    for name, deploy in deploys.items():
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies if _selects(p["spec"]["podSelector"]["matchLabels"], labels)]
        assert len(mine) == 1, f"{name}: {len(mine)} NetworkPolicies select it"
        spec = mine[0]["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        if name == TOPO.gateway.id:
            assert [p["port"] for r in spec["ingress"][:1] for p in r["ports"]] == [TOPO.gateway.port]
            continue
        wl = mesh["workloads"][name]
        inbound = TOPO.instance(name).inbound
        mesh_rules = [r for r in spec["ingress"] if [p["port"] for p in r["ports"]] == [inbound]]
        assert len(mesh_rules) == 1, name
        # Only from the pods the topology says call it (never from outside the mesh).
        allowed = {peer["podSelector"]["matchLabels"]["agentfactory.dev/workload"] for peer in mesh_rules[0]["from"]}
        callers = {i.id for i in TOPO.instances() if inst_service(name) in TOPO.services[i.service].upstreams}
        if inst_service(name) in {*TOPO.gateway.upstreams, TOPO.gateway.reflection_upstream}:
            callers.add(TOPO.gateway.id)
        assert allowed == callers == set(wl["callers"]), name
        for rule in spec["ingress"]:
            assert rule.get("from"), f"{name}: an ingress rule without `from` admits the whole cluster"
            ports = {p["port"] for p in rule["ports"]}
            assert ports <= {inbound, wl["ports"]["metrics"], mesh["probePort"]}, name
            assert wl["ports"]["app"] not in ports and wl["ports"]["admin"] not in ports, name
        egress_to = {
            peer["podSelector"]["matchLabels"]["agentfactory.dev/workload"]
            for r in spec["egress"]
            for peer in r.get("to", [])
            if "podSelector" in peer and "namespaceSelector" not in peer
        }
        assert egress_to == set(wl["calls"]), name


def inst_service(workload: str) -> str:
    return TOPO.instance(workload).service


def test_the_executor_and_the_schedulers_accept_only_the_schedulers_and_the_gateway(rendered: Rendered) -> None:
    spec = rendered.get("NetworkPolicy", "executor-blue")["spec"]
    peers = {p["podSelector"]["matchLabels"]["agentfactory.dev/workload"] for p in spec["ingress"][0]["from"]}
    assert peers == {"scheduler-blue", "scheduler-green", "gateway"}
    # A scheduler takes clients from the gateway, and the other color asking about an agent it owns.
    spec = rendered.get("NetworkPolicy", "scheduler-green")["spec"]
    peers = {p["podSelector"]["matchLabels"]["agentfactory.dev/workload"] for p in spec["ingress"][0]["from"]}
    assert peers == {"gateway", "scheduler-blue", "scheduler-green"}


def test_only_the_gateway_service_is_exposed(rendered: Rendered) -> None:
    for svc in rendered.of_kind("Service"):
        name, spec = svc["metadata"]["name"], svc["spec"]
        if name == TOPO.gateway.id:
            expected = "NodePort" if rendered.profile == "bluegreen" else "LoadBalancer"
            assert spec["type"] == expected
            assert [p["targetPort"] for p in spec["ports"]] == ["https"]
        else:
            assert spec.get("type", "ClusterIP") == "ClusterIP" and spec["clusterIP"] == "None", name
            assert [p["port"] for p in spec["ports"]] == [TOPO.instance(name).inbound], name


def test_pdbs_service_accounts_and_autoscaling(rendered: Rendered) -> None:
    accounts = {sa["metadata"]["name"]: sa for sa in rendered.of_kind("ServiceAccount")}
    pdbs = rendered.of_kind("PodDisruptionBudget")
    hpas = {h["metadata"]["name"]: h for h in rendered.of_kind("HorizontalPodAutoscaler")}
    for deploy in rendered.of_kind("Deployment"):
        name = deploy["metadata"]["name"]
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert [p for p in pdbs if _selects(p["spec"]["selector"]["matchLabels"], labels)], f"{name}: no PDB"
        sa = _pod(deploy)["serviceAccountName"]
        assert sa == name.split("-")[0] and accounts[sa]["automountServiceAccountToken"] is False
        if name.startswith("executor-") and rendered.profile != "bluegreen":
            assert hpas[name]["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
            assert "replicas" not in deploy["spec"], "the HPA owns the replica count"
        else:
            assert name not in hpas and deploy["spec"]["replicas"] >= 0
    if rendered.profile == "prod":
        assert rendered.get("PodDisruptionBudget", "executor-green")["spec"]["minAvailable"] == "50%"
        for name in ("registry", "scheduler-blue"):
            deploy = rendered.get("Deployment", name)
            assert deploy["spec"]["strategy"]["type"] == "Recreate"
            claim = rendered.get("PersistentVolumeClaim", f"{name}-data")
            assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def _weights(rendered: Rendered, configmap: str, key: str) -> set[tuple[tuple[str, int], ...]]:
    routes = yaml.safe_load(rendered.get("ConfigMap", configmap)["data"][key])
    out = set()
    for r in routes["resources"][0]["virtual_hosts"][0]["routes"]:
        wc = r["route"].get("weighted_clusters")
        if wc:
            out.add(tuple((c["name"], c["weight"]) for c in wc["clusters"]))
    return out


def test_blue_green_weights_come_from_values(rendered: Rendered) -> None:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for extra in PROFILES[rendered.profile]:
        for svc, v in yaml.safe_load(extra.read_text()).items():
            if isinstance(v, dict) and "weights" in v:
                values[svc]["weights"] = v["weights"]
    ex, sc = values["executor"]["weights"], values["scheduler"]["weights"]
    executor_split = (("executor-blue", ex["blue"]), ("executor-green", ex["green"]))
    scheduler_split = (("scheduler-blue", sc["blue"]), ("scheduler-green", sc["green"]))
    assert _weights(rendered, "gateway-routes", "gateway.yaml") == {executor_split, scheduler_split}
    for sched in ("scheduler-blue", "scheduler-green"):
        assert _weights(rendered, f"{sched}-routes", "outbound_executor.yaml") == {executor_split}
    if rendered.profile == "bluegreen":
        assert ex == {"blue": 10, "green": 90}
        green = _pod(rendered.get("Deployment", "executor-green"))["containers"][0]["image"]
        assert green.endswith(":0.2.0")


def test_a_weight_shift_changes_routes_but_restarts_no_pod(certs_values: Path) -> None:
    docs = {}
    for split in ("50", "20"):
        proc = render(
            [certs_values],
            "--set",
            f"executor.weights.blue={split}",
            "--set",
            f"executor.weights.green={100 - int(split)}",
        )
        assert proc.returncode == 0, proc.stderr
        docs[split] = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(proc.stdout) if d}
    a, b = docs["50"], docs["20"]
    assert a[("ConfigMap", "gateway-routes")] != b[("ConfigMap", "gateway-routes")]
    va = yaml.safe_load(a[("ConfigMap", "gateway-routes")]["data"]["gateway.yaml"])["version_info"]
    vb = yaml.safe_load(b[("ConfigMap", "gateway-routes")]["data"]["gateway.yaml"])["version_info"]
    assert va != vb, "a new split must be a new route version"
    for key, deploy in a.items():
        if key[0] == "Deployment":
            assert deploy["spec"]["template"] == b[key]["spec"]["template"], f"{key[1]} would restart"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["executor.weights.blue=60"], "must total 100"),
        (["scheduler.weights.purple=0"], "'purple' not allowed"),  # values.schema.json
        (["registry.persistence.enabled=true", "registry.replicas=2"], "one replica"),
        (["certificates.workloads.vault.cert=x", "certificates.workloads.vault.key=y"], "vault"),  # schema: enum
    ],
)
def test_bad_values_are_refused_with_a_reason(sets: list[str], message: str) -> None:
    args: list[str] = []
    for s in sets:
        args += ["--set", s]
    proc = render([], *args)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_certificates_are_tls_secrets_mounted_as_watched_directories(rendered: Rendered) -> None:
    for deploy in rendered.of_kind("Deployment"):
        name = deploy["metadata"]["name"]
        secret = rendered.get("Secret", f"{name}-tls")
        assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {"tls.crt", "tls.key"}
        pod = _pod(deploy)
        envoy = next(c for c in _containers(deploy) if c["name"] == "envoy")
        mounts = {m["name"]: m["mountPath"] for m in envoy["volumeMounts"]}
        vols = {v["name"]: v for v in pod["volumes"]}
        assert vols["workload-cert"]["secret"]["secretName"] == f"{name}-tls"
        sds = yaml.safe_load(rendered.get("ConfigMap", f"{name}-envoy")["data"]["workload.yaml"])
        tls = sds["resources"][0]["tls_certificate"]
        assert tls["watched_directory"]["path"] == mounts["workload-cert"]
        assert tls["certificate_chain"]["filename"] == mounts["workload-cert"] + "/tls.crt"
        # Only the envoy container sees the key; the app has no business with it.
        app = [c for c in pod["containers"] if c["name"] == "app"]
        assert all("workload-cert" not in {m["name"] for m in c["volumeMounts"]} for c in app)


_QUANTITY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _bytes(quantity: str | int) -> int:
    text = str(quantity)
    for suffix in sorted(_QUANTITY, key=len, reverse=True):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * _QUANTITY[suffix])
    return int(text)


def test_the_executor_data_volume_holds_its_caches_and_run_directories(rendered: Rendered) -> None:
    """The executor's caches and run directories live on its data volume; as an emptyDir with a smaller
    sizeLimit than their bounds, the kubelet would evict the pod once the caches fill. The bounds are the
    rendered env's, or the code's own defaults where the chart leaves one unset."""
    from services.common.config import Env
    from services.executor.settings import ExecutorSettings

    for deploy in rendered.of_kind("Deployment"):
        if not deploy["metadata"]["name"].startswith("executor"):
            continue
        app = next(c for c in _pod(deploy)["containers"] if c["name"] != "envoy")
        env = {e["name"]: e["value"] for e in app.get("env", []) if "value" in e}
        assert "AF_EXECUTOR_MAX_WORKERS" in env, "the chart must size the worker pool, not the node's cores"
        settings = ExecutorSettings.from_env(Env({k: v for k, v in env.items() if k.startswith("AF_EXECUTOR_")}))
        needed = (
            settings.module_disk_bytes + settings.files_cache_bytes + settings.max_workers * settings.scratch.max_bytes
        )
        data = next(v for v in _pod(deploy)["volumes"] if v["name"] == "data")
        if "emptyDir" in data:
            limit = _bytes(data["emptyDir"]["sizeLimit"])
            assert limit >= needed, f"{deploy['metadata']['name']}: data emptyDir {limit} < {needed} bytes"
