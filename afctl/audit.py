"""`afctl audit`: the security events of a run (publish, sign, rotate, revoke, run started, policy
denials from the services; RBAC denials from every Envoy), merged from the logs under var/log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from afctl.output import console, err, styled
from observability import audit_log


def audit(
    log_dir: Annotated[
        Path, typer.Option("--log-dir", envvar="AF_LOG_DIR", help="where the processes' logs are")
    ] = audit_log.DEFAULT_LOG_DIR,
    event: Annotated[str, typer.Option(help="only these events (comma list), e.g. publish,rbac_denial")] = "",
    actor: Annotated[str, typer.Option(help="only actors containing this (a SPIFFE ID or part of one)")] = "",
    since: Annotated[str, typer.Option(help="only newer: 15m, 2h, 1d or an ISO time")] = "",
    outcome: Annotated[str, typer.Option(help="ok, denied or failed")] = "",
    limit: Annotated[int, typer.Option(help="show the newest N (0 = all)")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line instead of a table")] = False,
) -> None:
    """Audit events from the services and the Envoys, oldest first."""
    if not log_dir.is_dir():
        err.print(f"no log directory {log_dir} (`make run` writes var/log)")
        raise typer.Exit(1)
    try:
        cutoff = audit_log.parse_since(since) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    found = audit_log.query(audit_log.read(log_dir), event=event, actor=actor, since=cutoff, outcome=outcome)
    if limit:
        found = found[-limit:]
    if as_json:
        for e in found:
            line = {
                "ts": e.ts.isoformat(),
                "event": e.event,
                "actor": e.actor,
                "target": e.target,
                "outcome": e.outcome,
                "service": e.service,
                **e.details,
            }
            print(json.dumps(line, default=str))
        return
    table = Table("time (UTC)", "event", "outcome", "actor", "target", "service", "details")
    for e in found:
        details = ", ".join(f"{k}={v}" for k, v in e.details.items() if k not in ("envoy", "request_id", "trace_id"))
        outcome_text = styled((e.outcome, "red")) if e.outcome == "denied" else styled(e.outcome)
        table.add_row(e.ts.strftime("%Y-%m-%d %H:%M:%S"), e.event, outcome_text, e.actor, e.target, e.service, details)
    console.print(table)
    if not found:
        err.print("no matching audit events")
