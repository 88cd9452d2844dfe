"""The CI performance smoke (issue 6, item 3): ghz through the gateway with mTLS, at a fixed rate.

RunAgent with echo-upper (server streaming to completion) at 100 requests per second for 5 s.
Fails when p95 reaches 100 ms or any request errors. This is the suite's only timing gate; the
ghz JSON report is kept in the test's tmp dir. It runs on its own mesh, traced at the Helm chart's
default sampling (conftest.py says why), before any other mesh of the suite starts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.harness_mesh import BIN, PROTOSET, E2EMesh

RPS = 100
CALLS = 500  # 5 s at RPS. A count, not -z: at the end of -z ghz closes its connections under calls still in flight
WARMUP_CALLS = 100
P95_LIMIT_MS = 100.0
CALL = "agentfactory.scheduler.v1.SchedulerService/RunAgent"


def _percentile_ms(report: dict, p: int) -> float:
    (entry,) = [d for d in report["latencyDistribution"] if d["percentage"] == p]
    return entry["latency"] / 1e6  # ghz reports nanoseconds


def test_ghz_smoke_through_the_gateway(gate_mesh: E2EMesh, tmp_path: Path) -> None:
    tls = gate_mesh.tls("operator")
    out = tmp_path / "ghz-runagent.json"
    args = [
        str(BIN / "ghz"),
        "--cacert", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key),
        "--protoset", str(PROTOSET),
        "--call", CALL,
        "-d", '{"template_name": "echo-upper", "input": "aGVsbG8gZ2h6"}',
        "--rps", str(RPS), "-n", str(CALLS), "--concurrency", "10", "--connections", "2",
        "--timeout", "5s",
        "--format", "json", "--output", str(out),
        gate_mesh.gateway,
    ]  # fmt: skip
    # Warm up first (connections, executor pools, caches) so the gate measures the steady state.
    warm = [a if a != str(CALLS) else str(WARMUP_CALLS) for a in args]
    warm[warm.index("--output") + 1] = str(tmp_path / "ghz-warmup.json")
    subprocess.run(warm, capture_output=True, text=True, timeout=60)
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"ghz failed: {done.stderr}"
    report = json.loads(out.read_text())

    p50, p95, p99 = (_percentile_ms(report, p) for p in (50, 95, 99))
    codes = report.get("statusCodeDistribution") or {}
    print(
        f"\nghz {CALL} via {gate_mesh.gateway}: {report['count']} calls at {report['rps']:.0f}/s, "
        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, codes {codes}; report {out}"
    )
    assert report["count"] == CALLS, report["count"]
    assert report["total"] >= 4.5e9, report["total"]  # ns: it really was paced at RPS
    assert set(codes) == {"OK"}, f"non-OK calls: {codes}, errors: {report.get('errorDistribution')}"
    assert not report.get("errorDistribution"), report["errorDistribution"]
    assert p95 < P95_LIMIT_MS, f"p95 {p95:.1f} ms (limit {P95_LIMIT_MS:.0f} ms)"
