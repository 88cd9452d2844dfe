"""Where alerts go: the Alertmanager config and the `alerting` section of prometheus.yml.

`make run` supervises a real Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1:9093 and
Prometheus sends it every firing alert. The route groups by alert and service, and sends pages and
tickets to two receivers; locally both are webhooks into observability/alert_sink.py (a file and a
log line), in a cluster they would be a pager and a ticket queue (helm/README.md has the example).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEFAULT_ALERTMANAGER_ADDR = "127.0.0.1:9093"
DEFAULT_SINK_ADDR = "127.0.0.1:9095"


def prometheus_alerting(alertmanager_addr: str) -> dict[str, Any]:
    """The `alerting` section of prometheus.yml: one static Alertmanager."""
    return {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_addr]}]}]}


def alertmanager_config(
    webhook_url: str, *, group_wait: str = "10s", group_interval: str = "1m", repeat_interval: str = "4h"
) -> dict[str, Any]:
    """Route by severity (the label every alert in rules/alerts.yml carries) to two receivers."""

    def webhook(severity: str) -> dict[str, Any]:
        return {
            "name": severity,
            "webhook_configs": [{"url": f"{webhook_url}?severity={severity}", "send_resolved": True}],
        }

    return {
        "route": {
            "receiver": "ticket",
            "group_by": ["alertname", "service", "instance"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
            "routes": [{"matchers": ['severity="page"'], "receiver": "page", "repeat_interval": "1h"}],
        },
        # A page for a process silences the tickets that the same outage causes.
        "inhibit_rules": [
            {"source_matchers": ['severity="page"'], "target_matchers": ['severity="ticket"'], "equal": ["instance"]}
        ],
        "receivers": [webhook("page"), webhook("ticket")],
    }


def write_alertmanager(config: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "alertmanager.yml"
    path.write_text(
        "# Rendered by `python -m observability.render`; edit observability/alerting.py instead.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return path
