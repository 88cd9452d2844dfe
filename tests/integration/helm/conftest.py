"""Render the chart with the real helm (build/bin/helm, `make helm`) for every values profile.

Each profile is rendered once per session, with certificates from a throwaway mesh CA (the same
`mesh.ca` a local run uses, turned into values by helm/mesh-certs-values.py), so the rendered
Secrets and ConfigMaps are complete enough to start Envoy's config validation on.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh import DEFAULT_TOPOLOGY, REPO
from mesh.ca import issue_all
from mesh.topology import load

CHART = REPO / "helm" / "agentfactory"
# Pinned: the chart is rendered for, and its manifests validated against, this Kubernetes.
KUBE_VERSION = "1.34.0"
NAMESPACE = "agentfactory"
PROFILES = {
    "default": [],
    "prod": [CHART / "values-prod.yaml"],
    "bluegreen": [CHART / "values-bluegreen.yaml"],
    "postgres": [CHART / "values-prod.yaml", CHART / "values-postgres.yaml"],
}


def helm_binary() -> str:
    local = REPO / "build" / "bin" / "helm"
    found = str(local) if local.exists() else shutil.which("helm")
    if not found:
        pytest.fail("no helm binary: run `make helm` (go install of the pinned version into build/bin)")
    return found


def helm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/af-helm-cache", "HELM_CONFIG_HOME": "/tmp/af-helm-config"}
    return subprocess.run([helm_binary(), *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


def _certs_module() -> Any:
    spec = importlib.util.spec_from_file_location("mesh_certs_values", REPO / "helm" / "mesh-certs-values.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def certs_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("helm-certs")
    issue_all(load(DEFAULT_TOPOLOGY), root / "certs")
    out = root / "certs-values.yaml"
    out.write_text(yaml.safe_dump(_certs_module().certificate_values(root / "certs")))
    return out


@dataclass(frozen=True)
class Rendered:
    profile: str
    values: list[Path]
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for d in self.of_kind(kind):
            if d["metadata"]["name"] == name:
                return d
        raise KeyError(f"{kind}/{name} not rendered in profile {self.profile}")


def render(values: list[Path], *extra: str) -> subprocess.CompletedProcess[str]:
    args: list[str | Path] = ["template", "af", CHART, "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for v in values:
        args += ["-f", v]
    return helm(*args, *extra)


@pytest.fixture(scope="session", params=sorted(PROFILES))
def rendered(request: pytest.FixtureRequest, certs_values: Path) -> Rendered:
    values = [*PROFILES[request.param], certs_values]
    proc = render(values)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return Rendered(request.param, values, docs)
