"""The trace sink's bounded file and the reader behind `afctl traces` (recent traces, the tree, prefixes,
orphans). Spans over real OTLP/gRPC: tests/integration/observability/test_trace_sink_otlp.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from afctl.__main__ import app
from observability import traces as reader
from observability.trace_sink import JsonlStore, Span, rotated


def _span(name: str, span_id: str, parent: str = "", trace: str = "t1", start: int = 0, end: int = 1_000_000) -> Span:
    return Span("svc", name, "server", trace, span_id, parent, start_ns=start, end_ns=end)


def test_the_file_is_rotated_and_both_generations_are_read(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "spans.jsonl", max_bytes=2_000)
    for i in range(40):
        store.add([_span(f"s{i}", f"{i:016x}", trace=f"{i:032x}", start=i)])
    assert rotated(store.path).exists()
    assert store.path.stat().st_size <= 2_000 and rotated(store.path).stat().st_size <= 2_000 + 400
    loaded = reader.load_spans(store.path)
    assert 0 < len(loaded) < 40  # the oldest generation is gone: bounded
    assert loaded[-1].name == "s39"
    assert [s.start_ns for s in loaded] == sorted(s.start_ns for s in loaded)


def test_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text(_span("ok", "a").to_json() + "\n" + '{"service": "cut in ha')
    assert [s.name for s in reader.load_spans(path)] == ["ok"]


def test_recent_traces_newest_first_with_root_duration_and_count() -> None:
    spans = [
        _span("old-root", "a1", trace="aa", start=0, end=5_000_000),
        _span("new-root", "b1", trace="bb", start=10_000_000, end=12_000_000),
        _span("new-child", "b2", parent="b1", trace="bb", start=10_500_000, end=13_000_000),
    ]
    summaries = reader.recent(spans)
    assert [t.trace_id for t in summaries] == ["bb", "aa"]
    assert summaries[0].root.name == "new-root" and summaries[0].span_count == 2
    assert summaries[0].duration_ms == pytest.approx(3.0)
    assert reader.recent(spans, limit=1)[0].trace_id == "bb"


def test_tree_orders_children_and_marks_orphans() -> None:
    spans = [
        _span("root", "r", start=0),
        _span("second", "c2", parent="r", start=20),
        _span("first", "c1", parent="r", start=10),
        _span("grandchild", "g", parent="c1", start=15),
        _span("lost", "o", parent="never-arrived", start=5),
    ]
    lines = [(line.depth, line.span.name, line.orphan) for line in reader.tree(spans)]
    assert lines == [
        (0, "root", False),
        (1, "first", False),
        (2, "grandchild", False),
        (1, "second", False),
        (0, "lost", True),
    ]


def test_find_trace_by_unambiguous_prefix() -> None:
    spans = [_span("a", "1", trace="abc1"), _span("b", "2", trace="abd2")]
    assert reader.find_trace(spans, "abc")[0].name == "a"
    with pytest.raises(LookupError, match="matches 2"):
        reader.find_trace(spans, "ab")
    with pytest.raises(LookupError, match="no trace"):
        reader.find_trace(spans, "ff")


def test_envoy_spans_are_labelled_with_their_grpc_method() -> None:
    envoy = Span("gateway", "egress 127.0.0.1:7541", "client", "t", "s", "", attributes={"grpc.path": "/a.B/C"})
    assert reader.span_label(envoy) == "egress /a.B/C"
    assert reader.span_label(_span("/a.B/C", "x")) == "/a.B/C"


def test_afctl_traces_list_and_show(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    JsonlStore(path).add(
        [
            _span("root-op", "r", trace=trace, start=0, end=9_000_000),
            Span("registry", "child-op", "client", trace, "c", "r", 1_000_000, 3_000_000, status_code=2),
        ]
    )
    runner = CliRunner()
    listed = runner.invoke(app, ["traces", "list", "--file", str(path)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert trace in listed.output and "root-op" in listed.output and "9.0 ms" in listed.output
    shown = runner.invoke(app, ["traces", "show", trace[:8], "--file", str(path)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "  child-op" in shown.output and "ERROR" in shown.output and "2.0 ms" in shown.output
    missing = runner.invoke(app, ["traces", "show", "ffff", "--file", str(path)])
    assert missing.exit_code == 1
    empty = runner.invoke(app, ["traces", "list", "--file", str(tmp_path / "none.jsonl")])
    assert empty.exit_code == 1 and "trace sink" in empty.output


def test_span_json_round_trip() -> None:
    span = Span("s", "n", "client", "t", "i", "p", 1, 2, {"a": [1, "x"]}, 2, "bad", "inst")
    assert Span.from_json(span.to_json()) == span
    assert json.loads(span.to_json())["attributes"] == {"a": [1, "x"]}
