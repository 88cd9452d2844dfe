"""The alerting configs `make run` renders: Prometheus points at the Alertmanager, and the
Alertmanager config passes `amtool check-config` with every severity the alerts use routed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from mesh import DEFAULT_TOPOLOGY
from mesh.topology import load
from observability import render
from observability.render import RULES_DIR

AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"


def test_render_with_an_alertmanager(tmp_path: Path) -> None:
    path = render.render(load(DEFAULT_TOPOLOGY), tmp_path, alertmanager_addr="127.0.0.1:9093")
    config = yaml.safe_load(path.read_text())
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    am = tmp_path / "alertmanager.yml"
    proc = subprocess.run([AMTOOL, "check-config", str(am)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_without_one_there_is_no_alerting_section(tmp_path: Path) -> None:
    config = yaml.safe_load(render.render(load(DEFAULT_TOPOLOGY), tmp_path).read_text())
    assert "alerting" not in config
    assert not (tmp_path / "alertmanager.yml").exists()


def test_every_severity_has_a_receiver(tmp_path: Path) -> None:
    render.render(load(DEFAULT_TOPOLOGY), tmp_path, alertmanager_addr="127.0.0.1:9093")
    am = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    receivers = {r["name"] for r in am["receivers"]}
    severities = {
        rule["labels"]["severity"]
        for p in RULES_DIR.glob("*.yml")
        for g in yaml.safe_load(p.read_text())["groups"]
        for rule in g["rules"]
        if "alert" in rule
    }
    assert severities <= receivers, (severities, receivers)


def test_make_run_supervises_alertmanager_and_its_sink(tmp_path: Path) -> None:
    from mesh.supervisor import render_conf

    config = render.render(load(DEFAULT_TOPOLOGY), tmp_path / "obs", alertmanager_addr="127.0.0.1:9093")
    conf = render_conf(
        load(DEFAULT_TOPOLOGY),
        out_dir=tmp_path,
        var_dir=tmp_path / "var",
        prometheus_config=config,
        alertmanager_config=tmp_path / "obs" / "alertmanager.yml",
    ).read_text()
    assert "[program:alertmanager]" in conf and "--web.listen-address=127.0.0.1:9093" in conf
    assert "[program:alert-sink]" in conf and "observability.alert_sink --listen 127.0.0.1:9095" in conf
