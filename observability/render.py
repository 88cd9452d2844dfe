"""Render the Prometheus configuration (and Grafana provisioning) for a mesh topology.

    python -m observability.render [--topology mesh/topology.yaml] [--out build/observability]

writes `prometheus.yml`, a copy of `rules/` next to it (rule paths are relative to the config) and
`grafana/provisioning/{datasources,dashboards}/agentfactory.yml` pointing at this checkout's
dashboards. Every process of the topology is scraped: each service instance's `/metrics` (job =
service name, instance = instance id) and every Envoy's admin `/stats/prometheus` (job `envoy`,
the sidecars and the gateway), plus Prometheus itself.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mesh import topology as topo_mod
from mesh.topology import LOOPBACK, Topology
from observability import alerting

HERE = Path(__file__).resolve().parent
RULES_DIR = HERE / "rules"
DASHBOARDS_DIR = HERE / "dashboards"
REPO = HERE.parent
DEFAULT_TOPOLOGY = REPO / "mesh" / "topology.yaml"
DEFAULT_OUT = REPO / "build" / "observability"
DEFAULT_PROMETHEUS_ADDR = f"{LOOPBACK}:9090"
ENVOY_METRICS_PATH = "/stats/prometheus"


@dataclass(frozen=True)
class Target:
    """One scrape target: `job` groups a kind of process, `instance` names this one."""

    job: str
    address: str
    instance: str
    metrics_path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict)


def topology_targets(topo: Topology) -> list[Target]:
    targets: list[Target] = []
    for inst in topo.instances():
        color = {"color": inst.color} if inst.color else {}
        targets.append(Target(inst.service, f"{LOOPBACK}:{inst.metrics}", inst.id, labels=color))
        targets.append(
            Target(
                "envoy",
                f"{LOOPBACK}:{inst.admin}",
                inst.id,
                ENVOY_METRICS_PATH,
                {"proxy": "sidecar", "workload": inst.service, **color},
            )
        )
    gw = topo.gateway
    targets.append(
        Target("envoy", f"{LOOPBACK}:{gw.admin}", gw.id, ENVOY_METRICS_PATH, {"proxy": "gateway", "workload": gw.id})
    )
    return targets


def prometheus_config(
    targets: Iterable[Target],
    *,
    scrape_interval: str = "15s",
    evaluation_interval: str | None = None,
    rule_files: Sequence[str] = ("rules/*.yml",),
    self_addr: str | None = DEFAULT_PROMETHEUS_ADDR,
) -> dict[str, Any]:
    """A Prometheus config as a mapping: one scrape job per (job, metrics path), static targets.

    `instance` is set to the process id rather than host:port, so alerts and dashboards say
    "executor-blue", not "127.0.0.1:7303"."""
    jobs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in targets:
        jobs.setdefault((t.job, t.metrics_path), []).append(
            {"targets": [t.address], "labels": {"instance": t.instance, **t.labels}}
        )
    if self_addr:
        jobs.setdefault(("prometheus", "/metrics"), []).append(
            {"targets": [self_addr], "labels": {"instance": "prometheus"}}
        )
    scrape_configs = [
        {"job_name": job, "metrics_path": path, "static_configs": statics}
        for (job, path), statics in sorted(jobs.items())
    ]
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": _min_duration(scrape_interval, "10s"),
            "evaluation_interval": evaluation_interval or scrape_interval,
        },
        "rule_files": list(rule_files),
        "scrape_configs": scrape_configs,
    }


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit):
            return float(duration[: -len(unit)]) * units[unit]
    raise ValueError(f"unsupported duration {duration!r} (use ms, s, m or h)")


def _min_duration(a: str, b: str) -> str:
    """scrape_timeout may not exceed scrape_interval."""
    return a if _seconds(a) <= _seconds(b) else b


def write_prometheus(config: Mapping[str, Any], out_dir: Path, rules_dir: Path = RULES_DIR) -> Path:
    """Write prometheus.yml and a copy of the rule files into `out_dir`; return the config path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir / "rules", ignore_errors=True)
    shutil.copytree(rules_dir, out_dir / "rules")
    path = out_dir / "prometheus.yml"
    path.write_text(
        "# Rendered by `python -m observability.render`; edit observability/ or mesh/topology.yaml instead.\n"
        + yaml.safe_dump(dict(config), sort_keys=False)
    )
    return path


def grafana_provisioning(prometheus_url: str, dashboards_dir: Path = DASHBOARDS_DIR) -> dict[str, dict[str, Any]]:
    """Grafana provisioning files (relative path -> content): the Prometheus data source, with the
    uid every dashboard refers to, and a file provider for the dashboards folder."""
    return {
        "datasources/agentfactory.yml": {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "Prometheus (Agent Factory)",
                    "uid": "agentfactory-prometheus",
                    "type": "prometheus",
                    "access": "proxy",
                    "url": prometheus_url,
                    "isDefault": True,
                    "editable": False,
                }
            ],
        },
        "dashboards/agentfactory.yml": {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "agentfactory",
                    "folder": "Agent Factory",
                    "type": "file",
                    "disableDeletion": True,
                    "allowUiUpdates": False,
                    "options": {"path": str(dashboards_dir), "foldersFromFilesStructure": False},
                }
            ],
        },
    }


def render(
    topo: Topology,
    out_dir: Path,
    scrape_interval: str = "15s",
    prometheus_addr: str = DEFAULT_PROMETHEUS_ADDR,
    alertmanager_addr: str | None = None,
    alert_sink_addr: str = alerting.DEFAULT_SINK_ADDR,
) -> Path:
    """prometheus.yml (+ rules, Grafana provisioning); with ``alertmanager_addr`` also the alerting
    section and alertmanager.yml, whose receivers post to the alert sink on ``alert_sink_addr``."""
    config = prometheus_config(topology_targets(topo), scrape_interval=scrape_interval, self_addr=prometheus_addr)
    if alertmanager_addr:
        config["alerting"] = alerting.prometheus_alerting(alertmanager_addr)
        alerting.write_alertmanager(alerting.alertmanager_config(f"http://{alert_sink_addr}/alerts"), out_dir)
    path = write_prometheus(config, out_dir)
    for rel, content in grafana_provisioning(f"http://{prometheus_addr}").items():
        target = out_dir / "grafana" / "provisioning" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--scrape-interval", default="15s")
    parser.add_argument("--prometheus-addr", default=DEFAULT_PROMETHEUS_ADDR)
    parser.add_argument("--alertmanager-addr", help="send alerts there (and write alertmanager.yml)")
    parser.add_argument("--alert-sink-addr", default=alerting.DEFAULT_SINK_ADDR, help="the receivers' webhook")
    args = parser.parse_args(argv)
    path = render(
        topo_mod.load(args.topology),
        args.out,
        args.scrape_interval,
        args.prometheus_addr,
        alertmanager_addr=args.alertmanager_addr,
        alert_sink_addr=args.alert_sink_addr,
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
