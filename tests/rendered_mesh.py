"""The repository's own topology rendered into a directory with a throwaway CA: the Envoy configs that
unit tests read as YAML and integration tests hand to the real `envoy --mode validate`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def render_repo_topology(root: Path) -> Rendered:
    topo = load(DEFAULT_TOPOLOGY)
    issue_all(topo, root / "certs")
    configs = render(topo, certs_dir=root / "certs", out_dir=root / "out")
    return Rendered(topo, root / "certs", root / "out", configs)
