"""database.existingSecret: the registry and the schedulers on an external PostgreSQL, several replicas
each with RollingUpdate and no PVC, each pod given only its own service's DSN; the default stays on the
embedded stores (one replica, on a volume, no DSN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.helm.conftest import PROFILES, render

SHARED = ("registry", "scheduler-blue", "scheduler-green")


def _docs(values: list[Path], *sets: str) -> list[dict[str, Any]]:
    proc = render(values, *[x for s in sets for x in ("--set", s)])
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _get(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _app(deploy: dict[str, Any]) -> dict[str, Any]:
    (app,) = [c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "app"]
    return app


def _dsn(deploy: dict[str, Any]) -> dict[str, Any] | None:
    pod = deploy["spec"]["template"]["spec"]
    every = [e for c in pod.get("initContainers", []) + pod["containers"] for e in c.get("env", [])]
    found = [e for e in every if e["name"] == "AF_DATABASE_URL"]
    return found[0]["valueFrom"]["secretKeyRef"] if found else None


def test_the_default_runs_the_embedded_stores_on_volumes_one_replica_and_no_dsn() -> None:
    # values.yaml must not lose data by default: the embedded stores get a PersistentVolumeClaim.
    docs = _docs(PROFILES["default"])
    for deploy in (d for d in docs if d["kind"] == "Deployment"):
        assert _dsn(deploy) is None, deploy["metadata"]["name"]
    for name in SHARED:
        deploy = _get(docs, "Deployment", name)
        assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate", name
        volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"] == {"claimName": f"{name}-data"}, name
        assert _get(docs, "PersistentVolumeClaim", f"{name}-data")


@pytest.mark.parametrize("profile", ["default", "prod"])
def test_the_signer_keeps_its_keys_and_ledger_on_a_volume_by_default(profile: str) -> None:
    # A restarted signer pod must find its keys (local backend) and key ledger (both backends) again.
    docs = _docs(PROFILES[profile])
    deploy = _get(docs, "Deployment", "signer")
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "signer-data"}
    assert _get(docs, "PersistentVolumeClaim", "signer-data")["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_the_postgres_profile_runs_replicas_with_rolling_updates_and_no_volume() -> None:
    docs = _docs(PROFILES["postgres"])
    for name in SHARED:
        deploy = _get(docs, "Deployment", name)
        assert deploy["spec"]["replicas"] == 2, name
        assert deploy["spec"]["strategy"]["type"] == "RollingUpdate", name
        volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
        assert "persistentVolumeClaim" not in volumes["data"], name
        # Only its own service's key, and from the CA key only the CA (never the other service's DSN).
        service = name.split("-")[0]
        assert _dsn(deploy) == {"name": "agentfactory-database", "key": service}, name
        assert volumes["database-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], name
        mounts = {m["name"]: m for m in _app(deploy)["volumeMounts"]}
        assert mounts["database-ca"]["mountPath"] == "/var/run/secrets/agentfactory/database"
        assert mounts["database-ca"]["readOnly"] is True
        egress = _get(docs, "NetworkPolicy", name)["spec"]["egress"]
        assert {"port": 5432, "protocol": "TCP"} in [p for rule in egress for p in rule.get("ports", [])], name
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"].startswith(SHARED)]
    for name in ("signer", "executor-blue", "executor-green", "gateway"):
        deploy = _get(docs, "Deployment", name)
        assert _dsn(deploy) is None, name
        if name != "gateway":
            egress = _get(docs, "NetworkPolicy", name)["spec"]["egress"]
            assert 5432 not in [p.get("port") for rule in egress for p in rule.get("ports", [])], name


def test_with_a_database_persistence_is_ignored_for_the_registry_and_the_schedulers_only() -> None:
    # The defaults (persistence on) plus a Secret: no PVC, several replicas allowed, the signer keeps its volume.
    sets = ("database.existingSecret=db", "registry.replicas=3")
    docs = _docs(PROFILES["default"], *sets)
    assert _get(docs, "Deployment", "registry")["spec"]["replicas"] == 3
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert claims == {"signer-data"}, claims


def test_keys_and_replicas_follow_values() -> None:
    docs = _docs(
        PROFILES["postgres"],
        "database.keys.scheduler=sched-dsn",
        "database.caKey=",
        "scheduler.colors.green.replicas=5",
    )
    assert _dsn(_get(docs, "Deployment", "scheduler-blue")) == {"name": "agentfactory-database", "key": "sched-dsn"}
    assert _get(docs, "Deployment", "scheduler-green")["spec"]["replicas"] == 5
    registry = _get(docs, "Deployment", "registry")
    assert "database-ca" not in {v["name"] for v in registry["spec"]["template"]["spec"]["volumes"]}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["database.existingSecret=Not_A_Name"], "existingSecret"),
        (["database.existingSecret=db", "database.keys.registry=a/b"], "registry"),
        (["database.secret=db"], "secret"),  # a typo is refused, not silently ignored
    ],
)
def test_bad_database_values_are_refused_with_a_reason(sets: list[str], message: str) -> None:
    proc = render([], *[x for s in sets for x in ("--set", s)])
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
