"""The repository's own topology, rendered once into a temp dir with a throwaway CA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mesh import DEFAULT_TOPOLOGY
from mesh.ca import issue_all
from mesh.render import render
from mesh.topology import Topology, load


@dataclass(frozen=True)
class Rendered:
    topo: Topology
    certs: Path
    out: Path
    configs: dict[str, Path]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    root = tmp_path_factory.mktemp("rendered")
    topo = load(DEFAULT_TOPOLOGY)
    issue_all(topo, root / "certs")
    configs = render(topo, certs_dir=root / "certs", out_dir=root / "out")
    return Rendered(topo, root / "certs", root / "out", configs)
