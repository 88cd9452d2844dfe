"""afctl prints other people's text (an agent's failure reason and log lines, audit actors and details,
span status messages) as it is: brackets in it are not Rich markup. With markup on, "[/b]" raised
MarkupError out of `afctl run`/`agents watch`, and "[none]" or "[red]" silently vanished."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import grpc
import pytest
import typer
from typer.testing import CliRunner

from afctl.__main__ import WatchPrinter, app, fail, show_agent
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


# An agent's reason or log line with terminal escape sequences: OSC 52 sets the operator's clipboard,
# CSI 2J clears the screen, CR and a C1 CSI overwrite what is shown. Shown escaped, never obeyed.
ESCAPES = "trap \x1b]52;c;Y3VybCBldmlsIHwgc2g=\x1b\\ then \x1b[2J\rand \x9b31m :x:"


def test_watch_shows_escape_sequences_in_a_reason_and_a_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    printer = WatchPrinter()
    printer.event(sch_pb.WatchAgentResponse(log=sch_pb.AgentLog(level="info", message=ESCAPES)))
    printer.state(sch_pb.Agent(state=sch_pb.AGENT_STATE_FAILED, reason=ESCAPES))
    out, notices = capsys.readouterr()
    for text in (out, notices):
        assert not any(c in text for c in "\x1b\r\x9b"), repr(text)
        shown = text.replace("\n", "")  # wrapped at the console's width
        assert "\\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x1b\\ then \\x1b[2J\\x0dand \\u009b31m :x:" in shown, repr(text)


def test_agents_get_shows_escape_sequences_in_the_agent_table(capsys: pytest.CaptureFixture[str]) -> None:
    show_agent(sch_pb.Agent(id="a1", state=sch_pb.AGENT_STATE_FAILED, reason="\x1b[8mhidden\x1b[0m", executor="\x07"))
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[8mhidden\\x1b[0m" in out, repr(out)


def test_a_failure_reason_in_an_error_message_is_shown_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    class Failed(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.RESOURCE_EXHAUSTED

        def details(self) -> str:
            return "output limit: \x1b]0;owned\x07"

    with pytest.raises(typer.Exit):
        fail(Failed())
    assert capsys.readouterr().err == "afctl: error: RESOURCE_EXHAUSTED: output limit: \\x1b]0;owned\\x07\n"


def test_agent_output_on_a_terminal_is_shown_escaped_and_into_a_pipe_as_it_is(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    printer = WatchPrinter()
    printer.write(printer.output.on_output(b"\x1b[31mred\x1b[0m\tok\n"))
    assert capsys.readouterr().out == "\x1b[31mred\x1b[0m\tok\n"  # piped: the agent's bytes

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    monkeypatch.setattr(sys, "stdout", tty)
    printer = WatchPrinter()
    printer.write(printer.output.on_output(b"\x1b[31mred\x1b[0m\tok\n"))
    assert tty.getvalue() == "\\x1b[31mred\\x1b[0m\tok\n"


def test_audit_prints_a_lone_surrogate_in_its_log_without_failing(tmp_path: Path) -> None:
    # A JSON log line may hold "\udcff" (valid JSON, not encodable as UTF-8): printing it raised UnicodeEncodeError.
    line = {"ts": "2026-11-21T06:00:00.000Z", "level": "warning", "service": "signer", "logger": "agentfactory.audit",
            "msg": "rbac_denial", "event": "rbac_denial", "actor": "spiffe://x/\udcff", "target": "/t",
            "outcome": "denied", "details": "d", "envoy": "signer", "trace_id": None}  # fmt: skip
    (tmp_path / "signer.log").write_text(json.dumps(line) + "\n")
    done = CliRunner().invoke(app, ["audit", "--log-dir", str(tmp_path)], env={"COLUMNS": "300"})
    assert done.exit_code == 0, done.output
    assert "spiffe://x/\\udcff" in done.output
