"""values.schema.json refuses the values a platform team could get wrong, and the optional parts
of the chart (cert-manager, Prometheus Operator, dashboards, `helm test`) render from one source.

Every bad value is tried with both `helm lint --strict` and `helm template` (Helm checks the
schema in both); each must fail and name the offending key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mesh import REPO
from observability.chart import stale
from observability.render import RULES_DIR
from tests.integration.helm.conftest import CHART, KUBE_VERSION, PROFILES, helm, render

SCHEMA = CHART / "values.schema.json"

# (what, --set arguments, a word the error must contain)
BAD_VALUES = [
    ("typo in a top-level key", ["gatway.replicas=3"], "gatway"),
    ("typo in a service key", ["executor.replcas=3"], "replcas"),
    ("sampling over 100 %", ["tracing.samplingPercent=500"], "samplingPercent"),
    ("sampling below 0", ["tracing.samplingPercent=-1"], "samplingPercent"),
    ("sampling as a word", ["tracing.samplingPercent=lots"], "samplingPercent"),
    ("weight over 100", ["executor.weights.blue=150"], "blue"),
    ("unknown color", ["executor.colors.red.replicas=1"], "red"),
    ("negative replicas", ["registry.replicas=-1"], "replicas"),
    ("replicas as text", ["gateway.replicas=three"], "replicas"),
    ("service type", ["gateway.service.type=Ingress"], "type"),
    ("port out of range", ["gateway.service.port=70000"], "port"),
    ("pull policy", ["images.pullPolicy=Sometimes"], "pullPolicy"),
    ("registry prefix without slash", ["images.registry=ghcr.io/acme"], "registry"),
    ("envoy log level", ["envoy.logLevel=loud"], "logLevel"),
    ("envoy concurrency 0", ["envoy.concurrency=0"], "concurrency"),
    ("root user", ["podSecurity.runAsUser=0"], "runAsUser"),
    ("bad memory quantity", ["registry.resources.limits.memory=lots"], "memory"),
    ("unknown resource", ["registry.resources.limits.gpu=1"], "gpu"),
    ("both pdb fields", ["podDisruptionBudget.minAvailable=1"], "podDisruptionBudget"),
    (
        "unknown workload certificate",
        ["certificates.workloads.billing.cert=x", "certificates.workloads.billing.key=y"],
        "billing",
    ),
    ("issuer kind", ["certificates.certManager.issuerRef.kind=Vault"], "kind"),
    ("certificate duration", ["certificates.certManager.duration=30 days"], "duration"),
    (
        "autoscaling target over 100",
        ["executor.autoscaling.targetCPUUtilizationPercentage=150"],
        "targetCPUUtilizationPercentage",
    ),
    ("monitoring typo", ["monitoring.podMonitor.enabeld=true"], "enabeld"),
    ("env name", ["signer.env.bad-name=1"], "bad-name"),
    ("executor scratch cap with a unit", ["executor.env.AF_EXECUTOR_SCRATCH_BYTES=16Mi"], "AF_EXECUTOR_SCRATCH_BYTES"),
    ("executor compile budget below 1 s of CPU", ["executor.env.AF_EXECUTOR_COMPILE_CPU_SECONDS=0"], "CPU_SECONDS"),
]


def test_schema_is_fresh() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "helm" / "values_schema.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_chart_observability_copies_are_fresh() -> None:
    assert stale() == [], "run `make helm-files` (python -m observability.chart)"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_passes_the_schema(profile: str) -> None:
    args = ["lint", "--strict", "--kube-version", KUBE_VERSION, CHART]
    for v in PROFILES[profile]:
        args += ["-f", v]
    proc = helm(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("what", "sets", "word"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_refused(what: str, sets: list[str], word: str) -> None:
    extra = [x for s in sets for x in ("--set", s)]
    lint = helm("lint", "--strict", "--kube-version", KUBE_VERSION, CHART, *extra)
    assert lint.returncode != 0, f"helm lint accepted {what}: {sets}"
    assert word in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    template = render([], *extra)
    assert template.returncode != 0, f"helm template accepted {what}: {sets}"
    assert word in template.stderr, template.stderr


def test_the_schema_describes_every_default_value() -> None:
    # additionalProperties: false everywhere means a default the schema lacks would fail lint; this
    # also catches a schema left behind when values.yaml grows a section.
    schema = json.loads(SCHEMA.read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"]), set(values) ^ set(schema["properties"])


def _optional(certs_values: Path) -> list[dict]:
    proc = render(
        [certs_values],
        "--set", "monitoring.podMonitor.enabled=true",
        "--set", "monitoring.prometheusRule.enabled=true",
        "--set", "monitoring.dashboards.enabled=true",
        "--set", "tests.clientSecret=af-admin-client",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_prometheus_rule_is_the_local_rules(certs_values: Path) -> None:
    docs = _optional(certs_values)
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    local = [g for p in sorted(RULES_DIR.glob("*.yml")) for g in yaml.safe_load(p.read_text())["groups"]]
    assert sorted(rule["spec"]["groups"], key=lambda g: g["name"]) == sorted(local, key=lambda g: g["name"])


def test_pod_monitor_scrapes_apps_and_envoys(certs_values: Path) -> None:
    monitor = next(d for d in _optional(certs_values) if d["kind"] == "PodMonitor")
    endpoints = {(e["port"], e["path"]) for e in monitor["spec"]["podMetricsEndpoints"]}
    assert endpoints == {("metrics", "/metrics"), ("probe", "/stats/prometheus")}


def test_dashboards_config_map_has_the_sidecar_label(certs_values: Path) -> None:
    cm = next(
        d
        for d in _optional(certs_values)
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentfactory-dashboards"
    )
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    names = sorted(p.name for p in (REPO / "observability" / "dashboards").glob("*.json"))
    assert sorted(cm["data"]) == [f"agentfactory-{n}" for n in names]
    for body in cm["data"].values():
        assert json.loads(body)["panels"]


def test_helm_test_pod_calls_the_gateway_with_a_client_cert(certs_values: Path) -> None:
    pod = next(d for d in _optional(certs_values) if d["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    script = container["args"][0]
    for step in ("HealthCheckRequest", "afctl templates list", "afctl run echo-upper"):
        assert step in script
    assert pod["spec"]["volumes"][0]["secret"]["secretName"] == "af-admin-client"


def test_no_test_pod_without_a_client_secret(rendered) -> None:
    assert rendered.of_kind("Pod") == []


def test_cert_manager_issues_one_svid_per_workload() -> None:
    proc = render([], "--set", "certificates.certManager.enabled=true")
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    certs = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Certificate"}
    secrets = {v["secret"]["secretName"] for d in docs if d["kind"] == "Deployment"
               for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == "workload-cert"}  # fmt: skip
    assert {f"{name}-tls" for name in certs} == secrets
    for name, spec in certs.items():
        service = name.split("-")[0]
        assert spec["uris"] == [f"spiffe://agentfactory.local/sa/{service}"], name
        assert spec["secretName"] == f"{name}-tls"
        assert {"server auth", "client auth"} <= set(spec["usages"])
    assert [d["spec"]["ca"]["secretName"] for d in docs if d["kind"] == "Issuer"] == ["mesh-ca"]


def test_cert_manager_and_inline_certificates_exclude_each_other(certs_values: Path) -> None:
    proc = render([certs_values], "--set", "certificates.certManager.enabled=true")
    assert proc.returncode != 0 and "exclude each other" in proc.stderr


def test_default_images_are_the_ones_make_images_builds() -> None:
    proc = render([])
    assert proc.returncode == 0, proc.stderr
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    images = set()
    for d in yaml.safe_load_all(proc.stdout):
        if d and d["kind"] == "Deployment":
            spec = d["spec"]["template"]["spec"]
            images |= {c["image"] for c in spec.get("initContainers", []) + spec["containers"]}
    built = {
        f"agentfactory/{n}:{chart['appVersion']}" for n in ("registry", "signer", "executor", "scheduler", "envoy")
    }
    assert images == built, images ^ built
    # `make images` tags with the same appVersion: ask make for the tag images/images.mk computes.
    tag = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", "images/images.mk",
         "--eval=af-print-image-tag: ; @echo $(IMAGE_TAG)", "af-print-image-tag"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    assert tag == str(chart["appVersion"])
