"""Read the trace sink's span file back: recent traces and one trace as a tree (for `afctl traces`).

Spans of one trace arrive from many processes at different times (each Envoy flushes every second,
each service every second or so), so a trace is whatever spans share its id when you look; a span
whose parent has not arrived (or was never exported) is shown at the top level, marked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from observability.trace_sink import Span, rotated, traces

DEFAULT_FILE = Path("var/traces/spans.jsonl")


def load_spans(path: Path) -> list[Span]:
    """Every span in `path` and its rotated generation (older first); unreadable lines are skipped."""
    spans: list[Span] = []
    for p in (rotated(path), path):
        if not p.exists():
            continue
        with open(p, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    spans.append(Span.from_json(line))
                except (ValueError, TypeError):
                    continue  # a line cut by a crash or a rotation mid-write
    return spans


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    root: Span  # the earliest span without a parent here (or the earliest span at all)
    start_ns: int
    end_ns: int
    span_count: int
    services: tuple[str, ...]
    errors: int

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6


def summarize(trace_id: str, spans: Sequence[Span]) -> TraceSummary:
    roots = [s for s in spans if not s.parent_span_id] or list(spans)
    root = min(roots, key=lambda s: s.start_ns)
    return TraceSummary(
        trace_id=trace_id,
        root=root,
        start_ns=min(s.start_ns for s in spans),
        end_ns=max(s.end_ns for s in spans),
        span_count=len(spans),
        services=tuple(dict.fromkeys(s.service for s in sorted(spans, key=lambda s: s.start_ns))),
        errors=sum(1 for s in spans if s.error),
    )


def recent(spans: Iterable[Span], limit: int = 20) -> list[TraceSummary]:
    """The newest `limit` traces, newest first."""
    summaries = [summarize(tid, group) for tid, group in traces(list(spans)).items()]
    summaries.sort(key=lambda t: t.start_ns, reverse=True)
    return summaries[:limit]


def find_trace(spans: Iterable[Span], trace_id: str) -> list[Span]:
    """The spans of the trace whose id is `trace_id` or starts with it (unambiguously)."""
    wanted = trace_id.lower()
    groups = traces(list(spans))
    if wanted in groups:
        return groups[wanted]
    matches = [tid for tid in groups if tid.startswith(wanted)]
    if len(matches) > 1:
        raise LookupError(f"{trace_id!r} matches {len(matches)} traces; give more of the id")
    if not matches:
        raise LookupError(f"no trace {trace_id!r} in the span file")
    return groups[matches[0]]


@dataclass(frozen=True)
class TreeLine:
    depth: int
    span: Span
    offset_ms: float  # start relative to the trace's first span
    orphan: bool  # its parent is not among the received spans


def tree(spans: Sequence[Span]) -> list[TreeLine]:
    """Depth-first, children in start order; orphans (parent missing) start their own subtree."""
    ids = {s.span_id for s in spans}
    kids: dict[str, list[Span]] = {}
    tops: list[Span] = []
    for s in spans:
        if s.parent_span_id and s.parent_span_id in ids:
            kids.setdefault(s.parent_span_id, []).append(s)
        else:
            tops.append(s)
    t0 = min((s.start_ns for s in spans), default=0)
    out: list[TreeLine] = []

    def walk(span: Span, depth: int, orphan: bool) -> None:
        out.append(TreeLine(depth, span, (span.start_ns - t0) / 1e6, orphan))
        for child in sorted(kids.get(span.span_id, []), key=lambda s: s.start_ns):
            walk(child, depth + 1, False)

    for top in sorted(tops, key=lambda s: s.start_ns):
        walk(top, 0, bool(top.parent_span_id))
    return out


def span_label(span: Span) -> str:
    """A span's name; for an Envoy span ("ingress", "egress <host:port>") plus the gRPC method it
    carried, which Envoy keeps in an attribute."""
    path = span.attributes.get("grpc.path")
    if path and not span.name.startswith("/"):
        return f"{span.name.split(' ', 1)[0]} {path}"
    return span.name


def to_json(spans: Sequence[Span]) -> str:
    return json.dumps([json.loads(s.to_json()) for s in spans], indent=2)
