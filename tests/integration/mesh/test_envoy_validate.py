"""Every Envoy config rendered from the repository's topology passes the real `envoy --mode validate`
(a process per config), and the validation reads the route files, not only the bootstrap."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mesh.envoy import validate, validate_all
from tests.rendered_mesh import Rendered, render_repo_topology


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render_repo_topology(tmp_path_factory.mktemp("rendered"))


def test_every_config_passes_envoy_validate(rendered: Rendered) -> None:
    assert set(rendered.configs) == set(rendered.topo.envoy_ids())
    failures = validate_all(list(rendered.configs.values()))
    assert not failures, "\n\n".join(f"{p}:\n{e}" for p, e in failures.items())


def test_validation_catches_a_broken_route_file(rendered: Rendered, tmp_path: Path) -> None:
    # Guard for the guard: validate() must read the RDS files, not just the bootstrap.
    copy = tmp_path / "registry"
    shutil.copytree(rendered.out / "registry", copy)
    boot = (copy / "envoy.yaml").read_text().replace(str(rendered.out / "registry"), str(copy))
    (copy / "envoy.yaml").write_text(boot)
    rds = copy / "rds" / "inbound.yaml"
    rds.write_text(rds.read_text().replace("timeout: 0s", "timeout: soon", 1))
    assert validate(copy / "envoy.yaml") is not None
