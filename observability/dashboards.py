"""Grafana dashboards for Agent Factory, defined once here and written as provisionable JSON.

    python -m observability.dashboards      # rewrites observability/dashboards/*.json

The JSON files are what Grafana loads (see observability/grafana/provisioning); they are generated
so that every panel has the same shape and a unit test can tell when they drift from this file.
Panels marked `core` must return data once the services have seen traffic: the integration test
runs every panel's queries against a real Prometheus and fails on a query error or an empty core
panel. The other panels (Envoy, refusals, tool calls, ...) may legitimately be empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
NOT_WATCH = 'method!~"Watch.*"'
SVC = 'service=~"$service"'
WORKLOAD = 'workload=~"$service"'
NOT_OK = 'code!="OK"'
SVC_UNDER_100MS = 'service=~"$service", le="0.1"'
DENIED = 'code="PERMISSION_DENIED"'


def rate(metric: str, selector: str = "", fn: str = "rate") -> str:
    """`rate(metric{selector}[$__rate_interval])` (or another range function)."""
    return f"{fn}({metric}{{{selector}}}[{RATE}])" if selector else f"{fn}({metric}[{RATE}])"


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    core: bool = True
    description: str = ""
    width: int = 12


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[str, ...] = ()  # label variables: "service", "instance"
    tags: tuple[str, ...] = field(default=("agentfactory",))


def p(title: str, *exprs: tuple[str, str], **kw: Any) -> Panel:
    return Panel(title, tuple(exprs), **kw)


def quantiles(metric: str, by: str, selector: str = "") -> tuple[tuple[str, str], ...]:
    sel = "{" + selector + "}" if selector else ""
    legend = "{{" + by + "}}" if by else ""
    group = f"{by}, le" if by else "le"
    return tuple(
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{sel}[{RATE}])))",
            f"p{int(q * 100)} {legend}".strip(),
        )
        for q in (0.5, 0.95, 0.99)
    )


FLEET = Dashboard(
    uid="agentfactory-fleet",
    title="Agent Factory / Fleet overview",
    description="Is the fleet healthy? Latency objective, errors, processes, agents.",
    panels=(
        p(
            "Requests per second",
            ("sum(agentfactory:rpc_requests:rate5m)", "all services"),
            kind="stat",
            unit="reqps",
            width=6,
        ),
        p("Processes up", ("sum(up)", "up"), ("count(up)", "scraped"), kind="stat", width=6),
        p("Firing alerts", ('count(ALERTS{alertstate="firing"}) or vector(0)', "firing"), kind="stat", width=6),
        p(
            "Agents created per minute",
            ("sum(rate(agentfactory_scheduler_agents_created_total[" + RATE + "])) * 60", "agents/min"),
            kind="stat",
            width=6,
        ),
        p(
            "p95 latency by service (objective 100 ms)",
            ("agentfactory:rpc_latency_seconds:p95_5m", "{{service}} p95"),
            ("agentfactory:rpc_latency_seconds:p99_5m", "{{service}} p99"),
            unit="s",
        ),
        p(
            "Latency budget burn rate (1 = on budget)",
            ("agentfactory:rpc_slow_ratio:rate5m / 0.05", "{{service}} 5m"),
            ("agentfactory:rpc_slow_ratio:rate1h / 0.05", "{{service}} 1h"),
            description="Share of requests over 100 ms over the 5 % budget; alerts fire at 14.4 (1 h) and 6 (6 h).",
        ),
        p("Server error ratio by service", ("agentfactory:rpc_error_ratio:rate5m", "{{service}}"), unit="percentunit"),
        p("Requests per second by service", ("agentfactory:rpc_requests:rate5m", "{{service}}"), unit="reqps"),
        p(
            "Agents created per minute by template",
            (f"sum by (template) (rate(agentfactory_scheduler_agents_created_total[{RATE}])) * 60", "{{template}}"),
        ),
        p(
            "Agents finished per minute by state and cause",
            (
                f"sum by (state, cause) (rate(agentfactory_scheduler_agents_finished_total[{RATE}])) * 60",
                "{{state}} ({{cause}})",
            ),
        ),
        p(
            "Calls forwarded between scheduler colors per minute",
            (
                f"sum by (method, result) (rate(agentfactory_scheduler_peer_calls_total[{RATE}])) * 60",
                "{{method}} {{result}}",
            ),
            core=False,  # only during a blue/green split of the schedulers
        ),
        p(
            "Agent failure ratio by cause",
            ("agentfactory:agents_failure_ratio:rate15m", "{{cause}}"),
            unit="percentunit",
            core=False,  # empty while no agent has failed
        ),
        p("Process up by job and instance", ("up", "{{job}} {{instance}}"), width=24),
    ),
)

RED = Dashboard(
    uid="agentfactory-red",
    title="Agent Factory / Service RED",
    description="Rate, errors and duration of one service, per method; and its sidecar.",
    variables=("service",),
    panels=(
        p(
            "Requests per second by method",
            (
                f'sum by (method) (rate(agentfactory_rpc_server_handled_total{{service=~"$service"}}[{RATE}]))',
                "{{method}}",
            ),
            unit="reqps",
        ),
        p(
            "Non-OK responses per second by method and code",
            (
                f"sum by (method, code) ({rate('agentfactory_rpc_server_handled_total', SVC + ', ' + NOT_OK)})",
                "{{method}} {{code}}",
            ),
            unit="reqps",
        ),
        p(
            "p95 latency by method",
            *quantiles("agentfactory_rpc_server_duration_seconds", "method", 'service=~"$service"')[1:2],
            unit="s",
        ),
        p(
            "p50 / p95 / p99 latency (watch streams excluded)",
            *quantiles("agentfactory_rpc_server_duration_seconds", "", f'service=~"$service", {NOT_WATCH}'),
            unit="s",
        ),
        p(
            "Share of requests over 100 ms by method",
            (
                f"1 - sum by (method) ({rate('agentfactory_rpc_server_duration_seconds_bucket', SVC_UNDER_100MS)})"
                f" / sum by (method) ({rate('agentfactory_rpc_server_duration_seconds_count', SVC)})",
                "{{method}}",
            ),
            unit="percentunit",
        ),
        p(
            "Sidecar: upstream requests per second by cluster",
            (
                f"sum by (instance, envoy_cluster_name) ({rate('envoy_cluster_upstream_rq_total', WORKLOAD)})",
                "{{instance}} → {{envoy_cluster_name}}",
            ),
            unit="reqps",
            core=False,  # Envoy sidecars are scraped only in the mesh
        ),
        p(
            "Sidecar: retries, retry overflow and ejections",
            (
                f"sum by (envoy_cluster_name) ({rate('envoy_cluster_upstream_rq_retry', WORKLOAD)})",
                "retry {{envoy_cluster_name}}",
            ),
            (
                f"sum by (envoy_cluster_name) ({rate('envoy_cluster_upstream_rq_retry_overflow', WORKLOAD)})",
                "overflow {{envoy_cluster_name}}",
            ),
            (
                f"sum by (envoy_cluster_name) (envoy_cluster_outlier_detection_ejections_active{{{WORKLOAD}}})",
                "ejected {{envoy_cluster_name}}",
            ),
            core=False,
        ),
        p(
            "Sidecar: downstream requests by response code class",
            (
                f"sum by (envoy_response_code_class) ({rate('envoy_http_downstream_rq_xx', WORKLOAD)})",
                "{{envoy_response_code_class}}xx",
            ),
            unit="reqps",
            core=False,
        ),
    ),
)

SANDBOX = Dashboard(
    uid="agentfactory-sandbox",
    title="Agent Factory / Sandbox and caches",
    description="Executor runs, limits, pool and queue; scheduler journal; every cache tier.",
    panels=(
        p(
            "Runs per second by outcome and limit",
            (f"sum by (outcome, limit) (rate(agentfactory_executor_runs_total[{RATE}]))", "{{outcome}} ({{limit}})"),
            unit="ops",
        ),
        p("Run duration", *quantiles("agentfactory_executor_run_duration_seconds", ""), unit="s"),
        p("Fuel used per run", *quantiles("agentfactory_executor_fuel_used", "")[1:]),
        p(
            "Sandbox peak memory per run",
            *quantiles("agentfactory_executor_sandbox_peak_memory_bytes", "")[1:],
            unit="bytes",
        ),
        p(
            "Worker pool by executor",
            ("agentfactory_executor_pool_busy", "{{instance}} busy"),
            ("agentfactory_executor_pool_workers", "{{instance}} workers"),
            ("agentfactory_executor_queue_depth", "{{instance}} queued"),
        ),
        p("Pool utilisation", ("agentfactory:executor_pool_utilisation:ratio", "{{instance}}"), unit="percentunit"),
        p(
            "Runs refused before starting by reason",
            (f"sum by (reason) (rate(agentfactory_executor_refusals_total[{RATE}]))", "{{reason}}"),
            unit="ops",
            core=False,
        ),
        p("Module compile time", *quantiles("agentfactory_executor_compile_seconds", "")[1:], unit="s"),
        p(
            "Tool calls per second by tool and result",
            (f"sum by (tool, result) (rate(agentfactory_executor_tool_calls_total[{RATE}]))", "{{tool}} {{result}}"),
            unit="ops",
            core=False,
        ),
        p(
            "Scheduler queue: pending and in flight",
            ("sum(agentfactory_scheduler_pending_agents)", "pending"),
            ("sum(agentfactory_scheduler_dispatches_in_flight)", "in flight"),
        ),
        p(
            "Journal commit latency (fsync)",
            *quantiles("agentfactory_scheduler_journal_commit_seconds", "")[1:],
            unit="s",
        ),
        p(
            "Dispatch retries by reason",
            (f"sum by (reason) (rate(agentfactory_scheduler_dispatch_retries_total[{RATE}]))", "{{reason}}"),
            unit="ops",
            core=False,
        ),
        p("Cache hit ratio by cache", ("agentfactory:cache_hit_ratio:rate10m", "{{cache}}"), unit="percentunit"),
        p("Cache lookups per second", ("agentfactory:cache_lookups:rate10m", "{{cache}} {{result}}"), unit="ops"),
        p(
            "Cache evictions by reason",
            (f"sum by (cache, reason) (rate(agentfactory_cache_evictions_total[{RATE}]))", "{{cache}} {{reason}}"),
            unit="ops",
            core=False,
        ),
        p(
            "Age of served cache entries (against the TTL)",
            *quantiles("agentfactory_cache_entry_age_seconds", "cache")[1:],
            unit="s",
        ),
    ),
)

SECURITY = Dashboard(
    uid="agentfactory-security",
    title="Agent Factory / Security",
    description="Keys, signatures, verification, policy and RBAC denials, certificates.",
    panels=(
        p("Signing key age by version (days)", ("agentfactory_signing_key_age_seconds / 86400", "v{{key_version}}")),
        p(
            "Key versions: signing and oldest still verifying",
            ("max(agentfactory_signing_key_latest_version)", "latest"),
            ("max(agentfactory_signing_key_min_version)", "minimum"),
            kind="stat",
        ),
        p(
            "Signatures made per second by key version",
            (f"sum by (key_version) (rate(agentfactory_signer_signatures_total[{RATE}]))", "v{{key_version}}"),
            unit="ops",
        ),
        p(
            "Verify calls per second by result",
            (f"sum by (result) (rate(agentfactory_signer_verifications_total[{RATE}]))", "{{result}}"),
            unit="ops",
        ),
        p(
            "Executor public-key refreshes",
            (f"sum by (result) (increase(agentfactory_executor_key_refreshes_total[{RATE}]))", "{{result}}"),
        ),
        p(
            "Templates refused by verification check",
            (f"sum by (check) (increase(agentfactory_executor_verification_failures_total[{RATE}]))", "{{check}}"),
            core=False,
        ),
        p(
            "Policy denials by service and rule",
            (f"sum by (service, rule) (increase(agentfactory_policy_denials_total[{RATE}]))", "{{service}} {{rule}}"),
        ),
        p(
            "PERMISSION_DENIED answered by the apps, by method",
            (
                f"sum by (service, method) ({rate('agentfactory_rpc_server_handled_total', DENIED, 'increase')})",
                "{{service}} {{method}}",
            ),
        ),
        p(
            "RBAC denials at the sidecars",
            (f"sum by (instance) (increase(envoy_http_rbac_denied[{RATE}]))", "{{instance}}"),
            core=False,  # Envoy sidecars are scraped only in the mesh
        ),
        p(
            "Days until the first certificate expires, per Envoy",
            ("envoy_server_days_until_first_cert_expiring", "{{instance}}"),
            unit="d",
            core=False,
        ),
    ),
)

DASHBOARDS = (FLEET, RED, SANDBOX, SECURITY)


def _variable(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": f"label_values(agentfactory_rpc_server_handled_total, {name})", "refId": name},
        "definition": f"label_values(agentfactory_rpc_server_handled_total, {name})",
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
        "sort": 1,
    }


def to_json(d: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = row_h = 0
    for i, panel in enumerate(d.panels, start=1):
        h = 4 if panel.kind == "stat" else 8
        if x + panel.width > 24:
            x, y = 0, y + row_h
            row_h = 0
        panels.append(
            {
                "id": i,
                "type": panel.kind,
                "title": panel.title,
                "description": panel.description,
                "datasource": DATASOURCE,
                "gridPos": {"x": x, "y": y, "w": panel.width, "h": h},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
                if panel.kind == "timeseries"
                else {},
                "targets": [
                    {"refId": chr(ord("A") + j), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
                    for j, (expr, legend) in enumerate(panel.exprs)
                ],
            }
        )
        x += panel.width
        row_h = max(row_h, h)
    datasource_var = {
        "name": "datasource",
        "type": "datasource",
        "query": "prometheus",
        "current": {"text": "Prometheus (Agent Factory)", "value": "agentfactory-prometheus"},
    }
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": list(d.tags),
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "utc",
        "templating": {"list": [datasource_var, *(_variable(v) for v in d.variables)]},
        "annotations": {"list": []},
        "panels": panels,
    }


def file_name(d: Dashboard) -> str:
    return d.uid.removeprefix("agentfactory-") + ".json"


def rendered() -> dict[str, str]:
    """File name -> JSON text, exactly as committed."""
    return {file_name(d): json.dumps(to_json(d), indent=2, ensure_ascii=False) + "\n" for d in DASHBOARDS}


def core_panels() -> set[tuple[str, str]]:
    """(dashboard uid, panel title) of every panel that must show data after traffic."""
    return {(d.uid, panel.title) for d in DASHBOARDS for panel in d.panels if panel.core}


def main() -> int:
    OUT_DIR.mkdir(exist_ok=True)
    for name, text in rendered().items():
        (OUT_DIR / name).write_text(text)
        print(OUT_DIR / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
