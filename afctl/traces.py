"""`afctl traces`: what the trace sink of `make run` received (var/traces/spans.jsonl).

afctl traces list [--limit 20]        recent traces: start, root, duration, spans, services
afctl traces show <trace-id|prefix>   one trace as a tree: durations, services, status
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from afctl.output import console, err, styled
from observability import traces as store
from observability.trace_sink import Span

app = typer.Typer(help="Traces received by the trace sink (`make run` starts it).", no_args_is_help=True)

FileOption = Annotated[
    Path, typer.Option("--file", envvar="AF_TRACES_FILE", help="the trace sink's span file (JSON lines)")
]


def _load(path: Path) -> list[Span]:
    spans = store.load_spans(path)
    if not spans:
        err.print(f"no spans in {path} (is the trace sink running? `make run` starts it)")
        raise typer.Exit(1)
    return spans


def _when(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@app.command("list")
def list_traces(
    file: FileOption = store.DEFAULT_FILE,
    limit: Annotated[int, typer.Option(help="how many traces, newest first")] = 20,
    contains: Annotated[str, typer.Option(help="only traces with a span whose name or path contains this")] = "",
) -> None:
    """Recent traces, newest first."""
    spans = _load(file)
    if contains:
        keep = {s.trace_id for s in spans if contains in store.span_label(s)}
        spans = [s for s in spans if s.trace_id in keep]
    table = Table("started (UTC)", "root", "duration", "spans", "errors", "services")
    # Never cut the id: it is what `afctl traces show` takes.
    table.columns.insert(0, Column("trace id", no_wrap=True, min_width=32))
    for t in store.recent(spans, limit):
        root = f"{t.root.service}: {store.span_label(t.root)}"
        table.add_row(
            t.trace_id,
            _when(t.start_ns),
            root,
            f"{t.duration_ms:.1f} ms",
            str(t.span_count),
            str(t.errors) if t.errors else "",
            ", ".join(t.services),
        )
    console.print(table)


@app.command("show")
def show_trace(
    trace_id: Annotated[str, typer.Argument(help="a trace id, or an unambiguous prefix of one")],
    file: FileOption = store.DEFAULT_FILE,
) -> None:
    """One trace as a tree: each span's start offset, duration, service (Envoy id or app) and status."""
    try:
        spans = store.find_trace(_load(file), trace_id)
    except LookupError as exc:
        err.print(str(exc))
        raise typer.Exit(1) from None
    summary = store.summarize(spans[0].trace_id, spans)
    console.print(
        f"trace {summary.trace_id}: {summary.span_count} spans, {summary.duration_ms:.1f} ms, "
        f"started {_when(summary.start_ns)} UTC"
    )
    table = Table("span", "service", "kind", "start", "duration", "status", box=None)
    for line in store.tree(spans):
        s = line.span
        name = "  " * line.depth + ("… " if line.orphan else "") + store.span_label(s)
        message = f" {s.status_message}" if s.status_message else ""
        status = styled(("ERROR", "red"), message) if s.error else styled("ok")
        grpc_status = s.attributes.get("rpc.grpc.status_code", s.attributes.get("grpc.status_code"))
        if grpc_status not in (None, "", 0, "0"):
            status.append(f" (grpc {grpc_status})")
        table.add_row(name, s.service, s.kind, f"+{line.offset_ms:.1f} ms", f"{s.duration_ms:.1f} ms", status)
    console.print(table)
    if any(line.orphan for line in store.tree(spans)):
        console.print("… = its parent span has not arrived (yet), or its exporter dropped it")
