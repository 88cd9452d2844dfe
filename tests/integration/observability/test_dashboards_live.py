"""Every dashboard panel's PromQL, run against a real Prometheus scraping the real services after
traffic: no query may error, core panels must return data; the metrics move with the traffic."""

from __future__ import annotations

import json
import time

import grpc
import pytest

from afctl.client import Client
from agentfactory.signer.v1 import signer_service_pb2 as sig_pb
from observability import dashboards
from observability.dashboards import OUT_DIR
from tests.harness_prometheus import PrometheusProcess, PromQLError
from tests.integration.observability.conftest import Stack, echo_template, manifest_with

# What Grafana substitutes before it sends a query: the rate window and the "All" of each variable.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$service": ".*", "$instance": ".*"}


def _substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr!r}"
    return expr


def _traffic(client: Client) -> None:
    """A little of everything the dashboards show: publishes, cached reads, a NOT_FOUND, a policy
    denial, signatures verified, and agents run to the end."""
    _, module = echo_template()
    for i in range(3):
        client.publish(manifest_with(version=f"1.0.{i + 1}"), module)
    for _ in range(5):
        client.get_template("echo-upper", "1.0.1")  # the second read onwards hits the manifest cache
    with pytest.raises(grpc.RpcError) as not_found:
        client.get_template("no-such-template")
    assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as denied:
        client.publish(manifest_with(name="wants-a-shell", tools=["shell"]), module)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    template = client.get_template("echo-upper", "1.0.1")
    verify = sig_pb.VerifyRequest(payload=template.canonical_manifest, signature=template.signature)
    assert client.signer.Verify(verify, timeout=5).valid
    for i in range(4):
        agent, output = client.run_to_end("echo-upper", f"hello {i}".encode())
        assert output == f"HELLO {i}".encode(), agent


@pytest.fixture(scope="module")
def after_traffic(stack: Stack, prometheus: PrometheusProcess) -> PrometheusProcess:
    _traffic(stack.client)
    stack.assert_alive()

    def scraped() -> bool:
        runs = prometheus.query('sum(agentfactory_executor_runs_total{outcome="succeeded"})')
        return bool(runs) and float(runs[0]["value"][1]) >= 4

    prometheus.wait_until("the runs to be scraped", scraped)
    time.sleep(2.5)  # two more scrapes and rule evaluations, so every rate has two points after the traffic
    return prometheus


def _panels() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(OUT_DIR.glob("*.json")):
        board = json.loads(path.read_text())
        out += [(board["uid"], panel) for panel in board["panels"]]
    return out


PANELS = _panels()


@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=[f"{uid}:{p['title']}" for uid, p in PANELS])
def test_panel_queries(after_traffic: PrometheusProcess, uid: str, panel: dict) -> None:
    core = (uid, panel["title"]) in dashboards.core_panels()
    results = []
    for target in panel["targets"]:
        expr = _substitute(target["expr"])
        try:
            results.append(after_traffic.query(expr))
        except PromQLError as exc:
            pytest.fail(f"{uid} / {panel['title']}: query {expr!r} failed: {exc}")
    if core:
        assert any(results), f"core panel {uid} / {panel['title']!r} returned no data: {panel['targets']}"


def test_metrics_move_with_traffic(stack: Stack, after_traffic: PrometheusProcess) -> None:
    def total(expr: str) -> float:
        result = after_traffic.query(expr)
        return sum(float(r["value"][1]) for r in result)

    before = total('sum(agentfactory_scheduler_agents_created_total{template="echo-upper"})')
    stack.client.run_to_end("echo-upper", b"more")
    after_traffic.wait_until(
        "agents created to grow",
        lambda: total('sum(agentfactory_scheduler_agents_created_total{template="echo-upper"})') > before,
    )
    assert total('agentfactory_policy_denials_total{service="registry"}') >= 1
    assert total('agentfactory_cache_requests_total{cache="registry_manifest", result="hit"}') >= 1
    assert total("agentfactory_signer_signatures_total") >= 4
    assert total("agentfactory_signing_key_age_seconds") > 0
    assert total('up{job=~"signer|registry|executor|scheduler"}') == 4


def test_no_alert_is_firing_on_a_healthy_stack(after_traffic: PrometheusProcess) -> None:
    rules = after_traffic.api("rules")["groups"]
    unhealthy = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"] if r.get("health") == "err"]
    assert not unhealthy, f"rules failing to evaluate: {unhealthy}"
    firing = after_traffic.query('ALERTS{alertstate="firing"}')
    assert not firing, firing
