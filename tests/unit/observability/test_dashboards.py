"""Dashboards: the committed JSON is what observability/dashboards.py generates, and every panel is
well-formed (unique ids, a query per target, the provisioned data source)."""

from __future__ import annotations

import json

import pytest

from observability import dashboards
from observability.dashboards import OUT_DIR

FILES = sorted(OUT_DIR.glob("*.json"))


def test_committed_json_matches_the_generator() -> None:
    expected = dashboards.rendered()
    assert sorted(expected) == [f.name for f in FILES], "run: python -m observability.dashboards"
    for name, text in expected.items():
        assert (OUT_DIR / name).read_text() == text, f"{name} is stale: run python -m observability.dashboards"


def test_the_four_dashboards_exist() -> None:
    titles = {json.loads(f.read_text())["title"] for f in FILES}
    for word in ("Fleet overview", "Service RED", "Sandbox and caches", "Security"):
        assert any(word in t for t in titles), word


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_panels_are_well_formed(path) -> None:  # type: ignore[no-untyped-def]
    board = json.loads(path.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    assert "datasource" in variables
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            if "$service" in target["expr"]:
                assert "service" in variables, panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24


def test_core_panels_are_named_after_real_panels() -> None:
    titles = {
        (json.loads(f.read_text())["uid"], p["title"]) for f in FILES for p in json.loads(f.read_text())["panels"]
    }
    core = dashboards.core_panels()
    assert core and core <= titles
