"""The alert and recording rules pass `promtool check rules`, and every alert has a promtool unit test."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from observability.render import HERE, RULES_DIR

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
ALERT_TESTS = HERE / "tests" / "alerts_test.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=HERE)


def _alerts() -> list[str]:
    names = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names += [rule["alert"] for rule in group["rules"] if "alert" in rule]
    return names


def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", *map(str, sorted(RULES_DIR.glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = _alerts()
    assert len(alerts) == len(set(alerts)), "alert names must be unique"
    assert not set(alerts) - firing, f"alerts never shown to fire: {sorted(set(alerts) - firing)}"
    assert not set(alerts) - quiet, f"alerts never shown to stay quiet: {sorted(set(alerts) - quiet)}"
    assert not (firing | quiet) - set(alerts), "tests name alerts that do not exist"


@pytest.mark.parametrize(
    "concept",
    [
        "LatencyBudgetBurnFast",
        "ErrorRatioHigh",
        "ExecutorSaturated",
        "AgentsFailingPlatform",
        "CacheHitRatioCollapsed",
        "SigningKeyRotationOverdue",
        "CertificateExpiringSoon",
        "ProcessDown",
    ],
)
def test_issue_alerts_exist(concept: str) -> None:
    assert concept in _alerts()


def test_every_alert_has_severity_and_summary() -> None:
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
                    assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
