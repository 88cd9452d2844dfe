"""docs/runbook.md stays true: a section and a runbook_url per alert, and every command in it exists.

Commands are checked against what the repository has: `make X` against the Makefile's targets,
`afctl ...` by asking afctl for that command's --help, `python -m services...` by importing the
module, and every PromQL block by `promtool check rules` (it parses each query as a rule).
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mesh import REPO
from observability.render import RULES_DIR

RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/agentfactory/agentfactory/blob/main/docs/runbook.md#"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _alerts() -> dict[str, dict]:
    alerts = {}
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            alerts |= {rule["alert"]: rule for rule in group["rules"] if "alert" in rule}
    return alerts


def _blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(RUNBOOK.read_text()) if kind == lang]


def _lines(lang: str) -> list[str]:
    return [ln.strip() for body in _blocks(lang) for ln in body.splitlines() if ln.strip()]


def _headings(level: str) -> list[str]:
    return re.findall(rf"^{level} (.+)$", RUNBOOK.read_text(), re.M)


def test_every_alert_has_a_section_and_a_runbook_url() -> None:
    sections = set(_headings("###"))
    for name, rule in _alerts().items():
        assert name in sections, f"docs/runbook.md has no '### {name}' section"
        assert rule["annotations"].get("runbook_url") == RUNBOOK_URL + name.lower(), name


def test_every_section_is_a_live_alert_or_a_procedure() -> None:
    text = RUNBOOK.read_text()
    alerts_part = text.split("## Procedures", 1)[0]
    stale = set(re.findall(r"^### (.+)$", alerts_part, re.M)) - set(_alerts())
    assert not stale, f"runbook sections for alerts that no longer exist: {sorted(stale)}"


def test_the_issue_procedures_are_there() -> None:
    procedures = " ".join(_headings("###")).lower()
    for topic in (
        "promotion and rollback",
        "key rotation and revocation",
        "certificate rotation",
        "backup and restore",
        "scaling executors",
        "losing a node",
    ):
        assert topic in procedures, topic


@functools.cache
def _make_targets() -> set[str]:
    out = subprocess.run(["make", "-pRrq", "-C", str(REPO)], capture_output=True, text=True, timeout=60).stdout
    return set(re.findall(r"^([a-z][a-z0-9-]*):", out, re.M))


@pytest.mark.parametrize("line", [ln for ln in _lines("") if ln.startswith("make ")])
def test_make_commands_exist(line: str) -> None:
    target = shlex.split(line)[1]
    assert target in _make_targets(), f"{line!r}: no make target {target!r}"


def _afctl_command(line: str) -> tuple[str, ...]:
    words = shlex.split(line.replace("<", "").replace(">", ""))[3:]
    # Global options first (e.g. --color green), then the command words (no options or values).
    while words and words[0].startswith("--"):
        words = words[2:]
    command = [w for w in words[:2] if not w.startswith("-")]
    if len(command) == 2 and command[0] in ("run", "audit"):
        command = command[:1]
    return tuple(command)


# One check per distinct command (each costs an interpreter start), named by its first line.
AFCTL = {_afctl_command(ln): ln for ln in reversed(_lines("")) if ln.startswith(".venv/bin/python -m afctl ")}


@pytest.mark.parametrize("command", sorted(AFCTL), ids=" ".join)
def test_afctl_commands_exist(command: tuple[str, ...]) -> None:
    # In process (typer's test runner): the command resolves and prints its help, no interpreter start.
    from typer.testing import CliRunner

    from afctl.__main__ import app

    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, (
        f"{AFCTL[command]!r}: afctl {' '.join(command)} --help failed:\n{result.output[-500:]}"
    )


@pytest.mark.parametrize("line", [ln for ln in _lines("") if ln.startswith(".venv/bin/python -m services.")])
def test_python_modules_exist(line: str) -> None:
    module = shlex.split(line)[2]
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == 0, f"{line!r}: {proc.stderr[-500:]}"


def test_promql_parses_and_names_recorded_series(tmp_path: Path) -> None:
    queries = _lines("promql")
    assert queries
    rules = {
        "groups": [
            {"name": "runbook", "rules": [{"record": f"runbook:q{i}", "expr": q} for i, q in enumerate(queries)]}
        ]
    }
    path = tmp_path / "runbook-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recorded = {
        r["record"]
        for p in RULES_DIR.glob("*.yml")
        for g in yaml.safe_load(p.read_text())["groups"]
        for r in g["rules"]
        if "record" in r
    }
    used = {name for q in queries for name in re.findall(r"agentfactory:[a-z0-9_:]+", q)}
    assert not used - recorded, f"runbook queries name series no rule records: {sorted(used - recorded)}"
