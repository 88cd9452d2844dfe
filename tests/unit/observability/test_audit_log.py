"""The reader behind `afctl audit`: service audit lines and Envoy RBAC-denial lines from the same log
directory (rotated generations too), merged in time order, filtered by event, actor and time."""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from afctl.__main__ import app
from observability import audit_log
from services.common.logs import AUDIT_LOGGER, JsonFormatter

SCHEDULER = "spiffe://agentfactory.local/sa/scheduler"
PUBLISHER = "spiffe://agentfactory.local/role/publisher/user/publisher"


def _service_line(event: str, actor: str, ts: str, **fields: object) -> str:
    """A line exactly as a service writes it (services.common.logs + services.common.audit)."""
    record = logging.LogRecord(AUDIT_LOGGER, logging.INFO, __file__, 1, event, None, None)
    record.fields = {"event": event, "actor": actor, "target": "echo@1.0.0", "outcome": "ok", **fields}
    entry = json.loads(JsonFormatter("registry").format(record))
    entry["ts"] = ts
    return json.dumps(entry)


def _envoy_line(actor: str | None, ts: str, envoy: str = "signer") -> str:
    """A line as the Envoy audit access log writes it (mesh/templates/macros.j2)."""
    return json.dumps(
        {
            "ts": ts,
            "level": "warning",
            "service": envoy,
            "logger": "agentfactory.audit",
            "msg": "rbac_denial",
            "event": "rbac_denial",
            "actor": actor,
            "target": "/agentfactory.signer.v1.SignerService/Sign",
            "outcome": "denied",
            "details": "rbac_access_denied_matched_policy[none]",
            "envoy": envoy,
            "trace_id": None,
        }
    )


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    (tmp_path / "registry.log").write_text(
        "\n".join(
            [
                '{"ts": "2026-11-21T06:00:00.000Z", "logger": "agentfactory.registry", "msg": "not audit"}',
                "plain text line agentfactory.audit",
                _service_line(
                    "publish", f"{PUBLISHER} via spiffe://agentfactory.local/sa/gateway", "2026-11-21T06:00:02.000Z"
                ),
            ]
        )
        + "\n"
    )
    (tmp_path / "envoy-signer.log").write_text(
        "[2026-11-21 06:00:00.500][1][warning][config] something Envoy says\n"
        + _envoy_line(SCHEDULER, "2026-11-21T06:00:01.000Z")
        + "\n"
    )
    (tmp_path / "envoy-gateway.log.1").write_text(_envoy_line(None, "2026-11-21T05:00:00.000Z", "gateway") + "\n")
    (tmp_path / "notes.txt").write_text(_envoy_line(SCHEDULER, "2026-11-21T06:00:03.000Z") + "\n")
    return tmp_path


def test_both_writers_merge_in_time_order(log_dir: Path) -> None:
    events = audit_log.query(audit_log.read(log_dir))
    assert [(e.event, e.service) for e in events] == [
        ("rbac_denial", "gateway"),  # from the rotated generation
        ("rbac_denial", "signer"),
        ("publish", "registry"),
    ]
    denial = events[1]
    assert denial.actor == SCHEDULER and denial.outcome == "denied"
    assert denial.target.endswith("/Sign") and denial.details["details"].startswith("rbac_access_denied")
    assert "trace_id" not in denial.details  # null values are dropped
    assert events[0].actor == ""  # a gateway client without a certificate


def test_filters(log_dir: Path) -> None:
    events = list(audit_log.read(log_dir))
    assert [e.event for e in audit_log.query(events, event="publish")] == ["publish"]
    assert len(audit_log.query(events, event="publish,rbac_denial")) == 3
    assert [e.service for e in audit_log.query(events, actor="sa/scheduler")] == ["signer"]
    assert [e.event for e in audit_log.query(events, actor="role/publisher")] == ["publish"]
    since = audit_log.parse_since("2026-11-21T06:00:01.500")
    assert [e.event for e in audit_log.query(events, since=since)] == ["publish"]
    assert len(audit_log.query(events, outcome="denied")) == 2


def test_since_accepts_durations_and_times() -> None:
    now = datetime.datetime(2026, 11, 21, 12, 0, tzinfo=datetime.UTC)
    assert audit_log.parse_since("15m", now) == now - datetime.timedelta(minutes=15)
    assert audit_log.parse_since("2d", now) == now - datetime.timedelta(days=2)
    assert audit_log.parse_since("2026-11-21T06:00:00Z", now).hour == 6
    with pytest.raises(ValueError, match="duration like 15m"):
        audit_log.parse_since("yesterday", now)


def test_afctl_audit_table_and_json(log_dir: Path) -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["audit", "--log-dir", str(log_dir), "--event", "rbac_denial"], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert SCHEDULER in table.output and "publish" not in table.output
    as_json = runner.invoke(app, ["audit", "--log-dir", str(log_dir), "--json", "--actor", "publisher"])
    assert as_json.exit_code == 0, as_json.output
    lines = [json.loads(line) for line in as_json.output.splitlines()]
    assert [(e["event"], e["service"], e["target"]) for e in lines] == [("publish", "registry", "echo@1.0.0")]
    bad = runner.invoke(app, ["audit", "--log-dir", str(log_dir), "--since", "soon"])
    assert bad.exit_code != 0
    missing = runner.invoke(app, ["audit", "--log-dir", str(log_dir / "nope")])
    assert missing.exit_code == 1
