"""The Prometheus config rendered from the mesh topology scrapes every process, and promtool accepts it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from mesh import topology
from observability import render

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def _rendered(tmp_path: Path) -> tuple[topology.Topology, dict]:
    topo = topology.load(render.DEFAULT_TOPOLOGY)
    path = render.render(topo, tmp_path)
    return topo, yaml.safe_load(path.read_text())


def _targets(config: dict) -> dict[tuple[str, str], tuple[str, str]]:
    """(job, instance) -> (address, metrics path)."""
    out = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for address in static["targets"]:
                out[(job["job_name"], static["labels"]["instance"])] = (address, job["metrics_path"])
    return out


def test_every_process_and_every_envoy_is_scraped(tmp_path: Path) -> None:
    topo, config = _rendered(tmp_path)
    targets = _targets(config)
    for inst in topo.instances():
        assert targets[(inst.service, inst.id)] == (f"127.0.0.1:{inst.metrics}", "/metrics")
        assert targets[("envoy", inst.id)] == (f"127.0.0.1:{inst.admin}", "/stats/prometheus")
    assert targets[("envoy", topo.gateway.id)] == (f"127.0.0.1:{topo.gateway.admin}", "/stats/prometheus")
    assert ("prometheus", "prometheus") in targets
    assert len(targets) == 2 * len(topo.instances()) + 2


def test_blue_green_color_is_a_label(tmp_path: Path) -> None:
    _, config = _rendered(tmp_path)
    labels = [s["labels"] for job in config["scrape_configs"] for s in job["static_configs"]]
    assert {"instance": "executor-blue", "color": "blue"}.items() <= next(
        x for x in labels if x["instance"] == "executor-blue"
    ).items()


def test_promtool_accepts_the_config_and_its_rules(tmp_path: Path) -> None:
    topo = topology.load(render.DEFAULT_TOPOLOGY)
    path = render.render(topo, tmp_path)
    result = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "rules" / "alerts.yml").exists()


def test_grafana_provisioning_points_at_the_dashboards(tmp_path: Path) -> None:
    topo = topology.load(render.DEFAULT_TOPOLOGY)
    render.render(topo, tmp_path, prometheus_addr="127.0.0.1:9999")
    prov = tmp_path / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "agentfactory.yml").read_text())["datasources"][0]
    assert ds["url"] == "http://127.0.0.1:9999" and ds["uid"] == "agentfactory-prometheus"
    provider = yaml.safe_load((prov / "dashboards" / "agentfactory.yml").read_text())["providers"][0]
    assert Path(provider["options"]["path"]) == render.DASHBOARDS_DIR


def test_scrape_timeout_never_exceeds_interval() -> None:
    config = render.prometheus_config([], scrape_interval="1s", self_addr=None)
    assert config["global"]["scrape_timeout"] == "1s"
    assert config["scrape_configs"] == []
