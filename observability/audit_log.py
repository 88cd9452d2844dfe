"""Read the audit trail back from the logs of a run (for `afctl audit`).

Two writers, one shape. The services write audit events on the `agentfactory.audit` logger
(services/common/audit.py) into their JSON logs; every Envoy (sidecars and the gateway) writes each
request its RBAC filter denied as a JSON line with the same keys (mesh/templates/macros.j2,
`access_log(..., audit=true)`) to its stdout, which supervisord keeps in var/log/envoy-<id>.log.
Either way a line has `ts`, `logger: agentfactory.audit`, `event`, `actor`, `target`, `outcome` and
`service` (the process or Envoy id). Rotated generations (`<log>.1`, ...) are read too.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AUDIT_LOGGER = "agentfactory.audit"  # services.common.logs.AUDIT_LOGGER; not imported: no service code here
DEFAULT_LOG_DIR = Path("var/log")
_CORE = ("ts", "event", "actor", "target", "outcome", "service", "logger", "level", "msg")
_DURATION = re.compile(r"\A([0-9]+)([smhd])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class AuditEvent:
    ts: datetime.datetime
    event: str
    actor: str
    target: str
    outcome: str
    service: str
    details: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the log file it came from


def parse_ts(value: str) -> datetime.datetime | None:
    try:
        ts = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=datetime.UTC)


def parse_since(value: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """`10m`, `2h`, `1d` (ago) or an ISO timestamp (UTC unless it says otherwise)."""
    now = now or datetime.datetime.now(datetime.UTC)
    match = _DURATION.fullmatch(value.strip())
    if match:
        return now - datetime.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    ts = parse_ts(value.strip())
    if ts is None:
        raise ValueError(f"--since {value!r}: give a duration like 15m, 2h, 1d or an ISO time like 2026-11-21T06:00")
    return ts


def from_line(line: str, source: str = "") -> AuditEvent | None:
    """The audit event on this log line, or None (any other line, JSON or not)."""
    if '"agentfactory.audit"' not in line:  # cheap: most lines are not audit events
        return None
    start = line.find("{")
    if start < 0:
        return None
    try:
        entry = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("logger") != AUDIT_LOGGER:
        return None
    ts = parse_ts(str(entry.get("ts", "")))
    if ts is None:
        return None
    return AuditEvent(
        ts=ts,
        event=str(entry.get("event") or entry.get("msg") or ""),
        actor=str(entry.get("actor") or ""),  # Envoy writes null for a caller without a certificate
        target=str(entry.get("target") or ""),
        outcome=str(entry.get("outcome") or ""),
        service=str(entry.get("service") or ""),
        details={k: v for k, v in entry.items() if k not in _CORE and v not in (None, "", "-")},
        source=source,
    )


def log_files(log_dir: Path) -> list[Path]:
    """Every log under `log_dir`, rotated generations included (supervisord: <name>.log.1 ...)."""
    return sorted(p for p in log_dir.glob("*.log*") if p.is_file() and re.search(r"\.log(\.[0-9]+)?\Z", p.name))


def read(log_dir: Path) -> Iterator[AuditEvent]:
    for path in log_files(log_dir):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                event = from_line(line, path.name)
                if event is not None:
                    yield event


def query(
    events: Iterable[AuditEvent],
    *,
    event: str = "",
    actor: str = "",
    since: datetime.datetime | None = None,
    outcome: str = "",
) -> list[AuditEvent]:
    """Filter (event exact or comma list; actor and outcome by substring) and sort oldest first."""
    wanted = {e.strip() for e in event.split(",") if e.strip()}
    out = [
        e
        for e in events
        if (not wanted or e.event in wanted)
        and (not actor or actor in e.actor)
        and (not outcome or outcome == e.outcome)
        and (since is None or e.ts >= since)
    ]
    out.sort(key=lambda e: e.ts)
    return out
