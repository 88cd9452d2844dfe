"""mesh.weights rewrites exactly the route files of the split service's callers, atomically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from mesh.topology import TopologyError
from mesh.weights import main, parse_split, set_weights
from tests.rendered_mesh import Rendered


@pytest.fixture
def out(rendered: Rendered, tmp_path: Path) -> Path:
    # A private copy: these tests change weights. Paths inside files still point at the
    # session render; only the weights and route files matter here.
    copy = tmp_path / "out"
    shutil.copytree(rendered.out, copy)
    return copy


def _split(path: Path, route_suffix: str) -> dict[str, int]:
    doc = yaml.safe_load(path.read_text())
    for r in doc["resources"][0]["virtual_hosts"][0]["routes"]:
        if r["match"]["path"].endswith(route_suffix) and "headers" not in r["match"]:
            return {c["name"]: c["weight"] for c in r["route"]["weighted_clusters"]["clusters"]}
    raise AssertionError(route_suffix)


def test_parse_split(rendered: Rendered) -> None:
    topo = rendered.topo
    assert parse_split(topo, "scheduler", ["90", "10"]) == {"blue": 90, "green": 10}
    assert parse_split(topo, "executor", ["green=100", "blue=0"]) == {"blue": 0, "green": 100}
    for bad in (["90", "20"], ["90"], ["blue=100"], ["x", "y"], ["-10", "110"]):
        with pytest.raises(TopologyError):
            parse_split(topo, "scheduler", bad)
    with pytest.raises(TopologyError, match="not split"):
        parse_split(topo, "registry", ["50", "50"])


def test_executor_shift_rewrites_every_caller_and_nothing_else(rendered: Rendered, out: Path) -> None:
    before = {p: p.read_text() for p in out.rglob("rds/*.yaml")}
    changed = set(set_weights(rendered.topo, out, "executor", {"blue": 10, "green": 90}))
    assert changed == {
        out / "gateway" / "rds" / "gateway.yaml",
        out / "scheduler-blue" / "rds" / "outbound_executor.yaml",
        out / "scheduler-green" / "rds" / "outbound_executor.yaml",
    }
    for p, text in before.items():
        assert (p.read_text() != text) == (p in changed), p
    assert _split(out / "scheduler-green" / "rds" / "outbound_executor.yaml", "/Run") == {
        "executor-blue": 10,
        "executor-green": 90,
    }
    assert json.loads((out / "weights.json").read_text())["executor"] == {"blue": 10, "green": 90}
    # Published by rename: no temp files left behind in the watched directories.
    assert not list(out.rglob(".*.tmp"))


def test_version_changes_only_with_content(rendered: Rendered, out: Path) -> None:
    f = out / "gateway" / "rds" / "gateway.yaml"
    v0 = yaml.safe_load(f.read_text())["version_info"]
    set_weights(rendered.topo, out, "scheduler", {"blue": 70, "green": 30})
    v1 = yaml.safe_load(f.read_text())["version_info"]
    assert v1 != v0
    assert set_weights(rendered.topo, out, "scheduler", {"blue": 70, "green": 30}) == []


def test_cli(rendered: Rendered, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topo_path = rendered.topo.source
    assert topo_path is not None
    args = ["--topology", str(topo_path), "--out-dir", str(out)]
    assert main([*args, "scheduler", "80", "20"]) == 0
    assert main(args) == 0
    assert "scheduler  blue=80  green=20" in capsys.readouterr().out
    assert main([*args, "scheduler", "80", "30"]) == 2
