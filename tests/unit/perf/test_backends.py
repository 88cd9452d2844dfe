"""perf/backends.py and perf/procs.py without a mesh: the round's steps, the report from recorded
rounds, and PostgreSQL's CPU counted over its process tree."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from perf import backends, procs


def _result(label: str, rps: float, ok: int, cpu: dict[str, float]) -> dict[str, object]:
    return {"label": label, "rps": rps, "count": ok, "ok": ok, "p50_ms": 5.0, "p95_ms": 9.0, "p99_ms": 12.0,
            "cpu_seconds": cpu, "load_before": [1.0, 1.0, 1.0], "command": f"build/bin/ghz {label}"}  # fmt: skip


def _round(out: Path, n: int, backend: str, saturation: float) -> None:
    labels = ["run-agent-100rps", "run-agent-200rps", "run-agent-saturation-c32", "create-agent-100rps",
              "create-agent-saturation-c32"]  # fmt: skip
    cpu = {"scheduler-blue": 1.0, "registry": 0.1, "ghz": 5.0} | ({"postgres": 0.5} if backend == "postgres" else {})
    results = [_result(f"backends/r{n}-{backend}-{label}", saturation, 1000, cpu) for label in labels]
    record = {"backend": backend, "round": n, "machine": {}, "results": results}
    (out / f"round-{n}-{backend}.json").write_text(json.dumps(record))


def test_creates_count_their_runs_and_every_step_is_labelled_by_round() -> None:
    steps = backends.round_steps("backends/r1-sqlite-", 8.0)
    assert all(s.label.startswith("backends/r1-sqlite-") for s in steps)
    creates = [s for s in steps if s.scenario == "create-agent"]
    assert creates and all(s.drain and s.cpu_through_drain for s in creates)
    saturated = [s for s in creates if not s.rps]
    assert all(s.total > 0 for s in saturated)  # unthrottled creates: a bounded backlog


def test_report_compares_the_backends_round_by_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "OUT", tmp_path)
    monkeypatch.setattr(backends, "TAKEOVER_FILE", tmp_path / "takeover.json")
    for n, (backend, rate) in enumerate([("sqlite", 300.0), ("postgres", 270.0), ("sqlite", 320.0)], start=1):
        _round(tmp_path, n, backend, rate)
    _round(tmp_path, 10, "postgres", 250.0)  # rounds sort by number, not by file name
    text = backends.report()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "saturation" not in line]
    assert [r.split(" | ")[0] for r in rows[2:6]] == ["| 1", "| 2", "| 3", "| 10"]
    # CPU per call excludes ghz: 1.0 + 0.1 (+ 0.5 PostgreSQL) s over 1,000 calls.
    assert "| 1 | sqlite | 300 | 5.0 | 9.0 | 12.0 | 0 | 1.10 | 1.00 | – | 0.10 |" in text
    assert "| 2 | postgres | 270 | 5.0 | 9.0 | 12.0 | 0 | 1.60 | 1.00 | 0.50 | 0.10 |" in text
    assert "SQLite 310/s, PostgreSQL 260/s (-16.1 %" in text


def test_a_process_tree_counts_at_least_the_process_itself() -> None:
    own = procs.cpu_seconds(os.getpid())
    assert procs.tree_cpu_seconds(os.getpid()) >= own
    assert procs.tree_cpu_seconds(2**22 + 1) == 0.0  # no such pid (above the kernel's pid_max)
