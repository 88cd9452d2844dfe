"""afctl prints other people's text (an agent's failure reason and log lines, audit actors and details,
span status messages) as it is: brackets in it are not Rich markup. With markup on, "[/b]" raised
MarkupError out of `afctl run`/`agents watch`, and "[none]" or "[red]" silently vanished."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from afctl.__main__ import WatchPrinter, app
from afctl.output import console, err
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb

HOSTILE = "trap at [/b] then [red]0x1f[/red] and [none]"


def test_the_consoles_read_no_markup() -> None:
    assert not console._markup and not err._markup  # rich has no public getter


def test_watch_prints_a_reason_with_brackets_literally(capsys: pytest.CaptureFixture[str]) -> None:
    printer = WatchPrinter()
    printer.state(sch_pb.Agent(state=sch_pb.AGENT_STATE_FAILED, reason=HOSTILE, output=b"partial"))
    assert capsys.readouterr().out == f"partial\nFAILED {HOSTILE}\n"


def test_audit_prints_actors_and_details_with_brackets_literally(tmp_path: Path) -> None:
    line = {
        "ts": "2026-11-21T06:00:00.000Z",
        "level": "warning",
        "service": "signer",
        "logger": "agentfactory.audit",
        "msg": "rbac_denial",
        "event": "rbac_denial",
        "actor": "spiffe://agentfactory.local/[/b]",
        "target": "/agentfactory.signer.v1.SignerService/Sign",
        "outcome": "denied",
        "details": "rbac_access_denied_matched_policy[none]",
        "envoy": "signer",
        "trace_id": None,
    }
    (tmp_path / "signer.log").write_text(json.dumps(line) + "\n")
    done = CliRunner().invoke(app, ["audit", "--log-dir", str(tmp_path)], env={"COLUMNS": "300"})
    assert done.exit_code == 0, done.output
    assert "spiffe://agentfactory.local/[/b]" in done.output and "matched_policy[none]" in done.output
