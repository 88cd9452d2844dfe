"""`make perf` / `make perf-soak`: ghz scenarios against the running mesh, CPU and memory of every
supervised process, ghz JSON results in perf/results/ and the report perf/REPORT.md.

    python -m perf.runner traced [--seconds 8]            # RunAgent with make run's 100 % tracing (make perf)
    python -m perf.runner sweep [--seconds 8] [--quick]   # the whole benchmark (make perf)
    python -m perf.runner soak [--seconds 300 --rps 500]  # memory over a long run (make perf-soak)
    python -m perf.runner report                          # re-render REPORT.md from perf/results/

Every ghz call is printed and recorded in the report exactly as it ran (config file + overrides).
The mesh must be up (`make run`); the runner pins the scheduler split to blue=100 (one journal owner).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import struct
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from examples.tools import wasm_writer
from perf import procs
from perf.procs import REPO, Snapshot

GHZ = REPO / "build" / "bin" / "ghz"
SCENARIOS = REPO / "perf" / "scenarios"
RESULTS = REPO / "perf" / "results"
GENERATED_DATA = RESULTS / "data"
SWEEP_FILE = RESULTS / "sweep.json"
SOAK_FILE = RESULTS / "soak.json"
TRACED_FILE = RESULTS / "traced.json"
REPORT = REPO / "perf" / "REPORT.md"
NOTES = REPO / "perf" / "NOTES.md"
SCHEDULER_METRICS = "http://127.0.0.1:7305/metrics"  # scheduler-blue (mesh/topology.yaml)
PY = sys.executable


# --- one ghz run -----------------------------------------------------------------------------------


@dataclass
class Step:
    scenario: str  # perf/scenarios/<scenario>.json
    label: str  # result file stem
    concurrency: int
    rps: int = 0  # 0: as fast as the concurrency allows (saturation)
    seconds: float = 0.0
    total: int = 0
    data_file: str = ""  # generated data (ids the runner learned) overriding the scenario's data-file
    drain: bool = False  # wait for background agents (CreateAgent) to finish before the next step
    cpu_through_drain: bool = False  # count the CPU of that wait too: a create's cost with its run's


@dataclass
class Result:
    label: str
    scenario: str
    command: str
    rps_target: int
    concurrency: int
    wall_seconds: float
    count: int
    ok: int
    errors: dict[str, int]
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    average_ms: float
    cpu_seconds: dict[str, float]  # per supervised process, plus "ghz"
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return self.count - self.ok


def ghz_command(step: Step, output: Path) -> list[str]:
    cmd = [str(GHZ.relative_to(REPO)), "--config", f"perf/scenarios/{step.scenario}.json"]
    cmd += ["--concurrency", str(step.concurrency)]
    if step.rps:
        cmd += ["--rps", str(step.rps)]
    if step.total:
        cmd += ["--total", str(step.total)]
    else:
        cmd += ["--duration", f"{step.seconds:g}s", "--duration-stop", "wait"]
    if step.data_file:
        cmd += ["--data-file", step.data_file]
    cmd += ["--format", "json", "--output", str(output.relative_to(REPO))]
    return cmd


def _percentile(report: dict[str, Any], pct: int) -> float:
    for entry in report.get("latencyDistribution") or []:
        if entry["percentage"] == pct:
            return entry["latency"] / 1e6
    return float("nan")


def run_step(step: Step) -> Result:
    output = RESULTS / f"{step.label}.json"
    cmd = ghz_command(step, output)
    print("  $ " + shlex.join(cmd), flush=True)
    pids = procs.supervised_pids()
    load_before = procs.load_average()
    before = Snapshot.take(pids)
    started = time.monotonic()
    child = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if step.drain and step.cpu_through_drain:
        drain()
    wall = time.monotonic() - started
    after = Snapshot.take(pids)
    if os.waitstatus_to_exitcode(status) != 0 and not output.exists():
        raise SystemExit(f"ghz failed for {step.label} (exit {os.waitstatus_to_exitcode(status)})")
    report = json.loads(output.read_text())
    # Per-request details would make each file megabytes; the summary, histogram and percentiles stay.
    report.pop("details", None)
    output.write_text(json.dumps(report, indent=1) + "\n")
    cpu = after.since(before)
    cpu["ghz"] = usage.ru_utime + usage.ru_stime
    count = int(report["count"])
    ok = int((report.get("statusCodeDistribution") or {}).get("OK", 0))
    result = Result(
        label=step.label,
        scenario=step.scenario,
        command=shlex.join(cmd),
        rps_target=step.rps,
        concurrency=step.concurrency,
        wall_seconds=round(wall, 3),
        count=count,
        ok=ok,
        errors={k: v for k, v in (report.get("errorDistribution") or {}).items()},
        rps=round(float(report["rps"]), 1),
        p50_ms=round(_percentile(report, 50), 2),
        p95_ms=round(_percentile(report, 95), 2),
        p99_ms=round(_percentile(report, 99), 2),
        average_ms=round(report["average"] / 1e6, 2),
        cpu_seconds={k: round(v, 3) for k, v in sorted(cpu.items())},
        load_before=load_before,
        load_after=procs.load_average(),
    )
    print(
        f"    {result.count} calls, {result.error_count} errors, {result.rps:.0f}/s, "
        f"p50 {result.p50_ms} ms, p95 {result.p95_ms} ms, p99 {result.p99_ms} ms",
        flush=True,
    )
    if step.drain and not step.cpu_through_drain:
        drain()
    return result


# --- the mesh ------------------------------------------------------------------------------------


def scheduler_gauges() -> dict[str, float]:
    text = urllib.request.urlopen(SCHEDULER_METRICS, timeout=5).read().decode()
    wanted = ("agentfactory_scheduler_pending_agents", "agentfactory_scheduler_dispatches_in_flight")
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            values[name] = float(value)
    return values


def drain(limit: float = 120.0) -> None:
    """Wait until the scheduler has no pending or running agent left (CreateAgent leaves runs behind)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not any(scheduler_gauges().values()):
            return
        time.sleep(0.5)
    print("    (scheduler still busy after the drain limit; continuing)")


def pin_scheduler_weights() -> None:
    subprocess.run(
        [PY, "-m", "mesh.weights", "--topology", "mesh/topology.yaml", "--out-dir", "build/mesh", "--wait", "10",
         "scheduler", "blue=100", "green=0"],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _client(role: str):  # type: ignore[no-untyped-def]
    from afctl.quickstart import client_for

    return client_for(role)


def prepare_data() -> dict[str, str]:
    """Ids the scenarios need: an agent for GetAgent, the echo-upper module digest for FetchModule."""
    GENERATED_DATA.mkdir(parents=True, exist_ok=True)
    with _client("operator") as operator:
        agent, _ = operator.run_to_end("echo-upper", b"perf", version="1.0.0")
        digest = operator.get_template("echo-upper", "1.0.0").manifest.module_sha256
    files = {
        "get-agent": GENERATED_DATA / "get-agent.json",
        "fetch-module": GENERATED_DATA / "fetch-module.json",
    }
    files["get-agent"].write_text(json.dumps({"id": agent.id}) + "\n")
    files["fetch-module"].write_text(json.dumps({"sha256": digest}) + "\n")
    return {k: str(v.relative_to(REPO)) for k, v in files.items()}


def _with_custom_section(wasm: bytes, payload: bytes) -> bytes:
    """The same module with a custom section appended: a new digest, so the executor must compile it."""
    return wasm + wasm_writer.section(0, wasm_writer.name("agentfactory-perf") + payload)  # id 0: custom


def publish_to_first_run(trials: int = 5) -> dict[str, Any]:
    """Publish a new template version (new module digest), then RunAgent it at once; time both."""
    from afctl.examples import catalogue

    echo = next(t for t in catalogue("agents") if t.name == "echo-upper")
    manifest = json.loads(echo.manifest_json())
    module = echo.module()
    assert module is not None
    samples = []
    with _client("publisher") as publisher, _client("operator") as operator:
        for i in range(trials):
            version = f"1.0.{int(time.time())}{i}"
            manifest.update(name="perf-echo", version=version)
            wasm = _with_custom_section(module, struct.pack("<dd", time.time(), i))
            t0 = time.perf_counter()
            publisher.publish(json.dumps(manifest).encode(), wasm)
            t_ack = time.perf_counter()
            agent, output = operator.run_to_end("perf-echo", b"first run", version=version)
            t_run = time.perf_counter()
            ok = agent.state == 3 and output == b"FIRST RUN"  # AGENT_STATE_SUCCEEDED
            samples.append(
                {"version": version, "publish_ms": round((t_ack - t0) * 1e3, 1),
                 "ack_to_first_run_ms": round((t_run - t_ack) * 1e3, 1),
                 "publish_to_first_run_ms": round((t_run - t0) * 1e3, 1), "succeeded": ok}
            )  # fmt: skip
            print(f"    {version}: publish {samples[-1]['publish_ms']} ms, first run after "
                  f"{samples[-1]['ack_to_first_run_ms']} ms, succeeded={ok}")  # fmt: skip
    return {"trials": samples, "max_ms": max(s["publish_to_first_run_ms"] for s in samples)}


def sandbox_baseline(runs: int) -> str:
    """The bare wasmtime floor and the executor's in-process run path (perf/sandbox/bench.py)."""
    cmd = [PY, "perf/sandbox/bench.py", "--runs", str(runs), "--sieve-runs", "5"]
    print("  $ " + shlex.join(cmd), flush=True)
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
    table = "\n".join(line for line in out.splitlines() if line.startswith("|"))
    return f"Command: `{shlex.join(cmd).replace(PY, '.venv/bin/python')}`\n\n{table}\n"


# --- the sweep -------------------------------------------------------------------------------------


def sweep_steps(seconds: float, data: dict[str, str], quick: bool) -> list[Step]:
    s = seconds
    rates = [100, 500, 1000] if quick else [100, 250, 500, 750, 1000]
    steps = [Step("run-agent", "warmup-run-agent", 16, seconds=max(3.0, s / 2))]
    steps += [Step("run-agent", f"run-agent-{r}rps", 64, rps=r, seconds=s) for r in rates]
    steps += [Step("run-agent", f"run-agent-saturation-c{c}", c, seconds=s) for c in (32, 96)]
    # The same runs with RunAgentRequest.view = RESULT: two messages per call instead of four.
    steps += [
        Step("run-agent-result", "run-agent-result-500rps", 64, rps=500, seconds=s),
        Step("run-agent-result", "run-agent-result-saturation-c96", 96, seconds=s),
    ]
    steps += [
        Step("run-agent-direct", "run-agent-direct-500rps", 64, rps=500, seconds=s),
        Step("run-agent-direct", "run-agent-direct-saturation-c32", 32, seconds=s),
        # Every created agent also runs: 500 creates/s is 500 runs/s behind them. 250/s is within capacity.
        Step("create-agent", "create-agent-250rps", 64, rps=250, seconds=s, drain=True),
        Step("create-agent", "create-agent-500rps", 64, rps=500, seconds=s, drain=True),
        # Unthrottled creates pile up runs behind them: a fixed total keeps the backlog bounded.
        Step("create-agent", "create-agent-saturation-c32", 32, total=int(s * 600), drain=True),
        Step("get-agent", "get-agent-500rps", 32, rps=500, seconds=s, data_file=data["get-agent"]),
        Step("get-agent", "get-agent-saturation-c32", 32, seconds=s, data_file=data["get-agent"]),
        Step("get-template", "get-template-500rps", 32, rps=500, seconds=s),
        Step("get-template", "get-template-saturation-c32", 32, seconds=s),
        Step("fetch-module", "fetch-module-500rps", 32, rps=500, seconds=s, data_file=data["fetch-module"]),
        Step("fetch-module", "fetch-module-saturation-c32", 32, seconds=s, data_file=data["fetch-module"]),
    ]
    return steps


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "services"], cwd=REPO, capture_output=True, text=True)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit.stdout.strip() + (" (services/ modified)" if dirty.stdout.strip() else ""),
        # `make run BACKEND=postgres` supervises a PostgreSQL; the embedded mode has none.
        "backend": "postgres" if "postgres" in procs.supervised_pids() else "sqlite",
    }


def cmd_sweep(args: argparse.Namespace) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    pin_scheduler_weights()
    info = machine()
    print(f"perf sweep on {info['cpus']} CPUs, load average {procs.load_average()}", flush=True)
    data = prepare_data()
    results: list[Result] = []
    for step in sweep_steps(args.seconds, data, args.quick):
        results.append(run_step(step))
    print("publish → first run:", flush=True)
    first_run = publish_to_first_run()
    print("bare wasmtime baseline:", flush=True)
    baseline = sandbox_baseline(500 if args.quick else 1000)
    SWEEP_FILE.write_text(
        json.dumps(
            {
                "machine": info,
                "results": [asdict(r) for r in results],
                "publish_to_first_run": first_run,
                "sandbox_baseline": baseline,
            },
            indent=1,
        )
        + "\n"
    )
    write_report()
    print(f"wrote {REPORT.relative_to(REPO)} and {RESULTS.relative_to(REPO)}/", flush=True)
    return 0


def traced_steps(seconds: float) -> list[Step]:
    return [
        Step("run-agent", "traced-warmup-run-agent", 16, seconds=3.0),
        Step("run-agent", "traced-run-agent-500rps", 64, rps=500, seconds=seconds),
        Step("run-agent", "traced-run-agent-saturation-c32", 32, seconds=seconds),
    ]


def cmd_traced(args: argparse.Namespace) -> int:
    """RunAgent on the mesh as `make run` has it (every request traced), for the cost of tracing."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    pin_scheduler_weights()
    print(f"traced RunAgent (make run's mesh), load average {procs.load_average()}", flush=True)
    results = [run_step(step) for step in traced_steps(args.seconds)]
    TRACED_FILE.write_text(json.dumps({"machine": machine(), "results": [asdict(r) for r in results]}, indent=1) + "\n")
    return 0


# --- the soak --------------------------------------------------------------------------------------


def cmd_soak(args: argparse.Namespace) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    pin_scheduler_weights()
    pids = procs.supervised_pids()
    if args.quick:
        args.seconds = 60.0
    step = Step("run-agent", "soak-run-agent", 64, rps=args.rps, seconds=args.seconds)
    output = RESULTS / f"{step.label}.json"
    cmd = ghz_command(step, output)
    print("  $ " + shlex.join(cmd), flush=True)
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    child = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL)
    while child.poll() is None:
        samples.append({"t": round(time.monotonic() - started, 1),
                        "rss": {name: procs.rss_bytes(pid) for name, pid in pids.items()}})  # fmt: skip
        time.sleep(args.sample_seconds)
    report = json.loads(output.read_text())
    report.pop("details", None)
    output.write_text(json.dumps(report, indent=1) + "\n")
    # Memory after the first minute (caches, pools and buffers filled) against the end of the run.
    settled = [s for s in samples if s["t"] >= min(60.0, args.seconds / 5)]
    drift = {}
    for name in pids:
        series = [s["rss"][name] for s in settled if s["rss"].get(name)]
        if series:
            drift[name] = {
                "first_mib": round(series[0] / 2**20, 1),
                "last_mib": round(series[-1] / 2**20, 1),
                "min_mib": round(min(series) / 2**20, 1),
                "max_mib": round(max(series) / 2**20, 1),
                "drift_pct": round(100 * (series[-1] - series[0]) / series[0], 1),
                "spread_pct": round(100 * (max(series) - min(series)) / series[0], 1),
            }
    ok = int((report.get("statusCodeDistribution") or {}).get("OK", 0))
    soak = {
        "machine": machine(),
        "command": shlex.join(cmd),
        "seconds": args.seconds,
        "rps_target": args.rps,
        "count": report["count"],
        "ok": ok,
        "rps": round(report["rps"], 1),
        "p95_ms": round(_percentile(report, 95), 2),
        "p99_ms": round(_percentile(report, 99), 2),
        "load_after": procs.load_average(),
        "rss": drift,
        "samples": samples,
    }
    SOAK_FILE.write_text(json.dumps(soak, indent=1) + "\n")
    worst = max(drift.items(), key=lambda kv: abs(kv[1]["drift_pct"]))
    print(f"soak: {soak['count']} calls, {soak['count'] - ok} errors; worst RSS drift {worst[0]} "
          f"{worst[1]['drift_pct']:+.1f} %")  # fmt: skip
    write_report()
    return 0


# --- the report ------------------------------------------------------------------------------------

PROCESS_ORDER = (
    "envoy-gateway", "envoy-scheduler-blue", "envoy-executor-blue", "envoy-executor-green", "envoy-registry",
    "envoy-signer", "scheduler-blue", "executor-blue", "executor-green", "registry", "signer", "postgres",
    "supervisord", "prometheus",
)  # fmt: skip
SHORT = {
    "envoy-gateway": "gw", "envoy-scheduler-blue": "sch sc", "envoy-executor-blue": "ex-b sc",
    "envoy-executor-green": "ex-g sc", "envoy-registry": "reg sc", "envoy-signer": "sig sc",
    "scheduler-blue": "sched", "executor-blue": "ex-b", "executor-green": "ex-g", "registry": "reg", "signer": "sig",
    "postgres": "pg", "supervisord": "supd", "prometheus": "prom",
}  # fmt: skip
INFRA = ("supervisord", "prometheus")


def _target_rows(results: dict[str, dict[str, Any]], first_run: dict[str, Any] | None) -> list[str]:
    rows = []

    def row(target: str, measured: str, met: bool | None) -> None:
        verdict = "—" if met is None else ("**met**" if met else "**not met**")
        rows.append(f"| {target} | {measured} | {verdict} |")

    sat = [r for k, r in results.items() if k.startswith("run-agent-saturation")]
    if sat:
        best = max(sat, key=lambda r: r["ok"] / r["wall_seconds"])
        errs = sum(r["count"] - r["ok"] for r in sat)
        row(
            "RunAgent via gateway at saturation ≥ 1,000 runs/s, zero errors",
            f"{best['rps']:.0f} runs/s (c={best['concurrency']}), {errs} errors",
            best["rps"] >= 1000 and errs == 0,
        )
    r500 = results.get("run-agent-500rps")
    if r500:
        row(
            "RunAgent at 500/s: p95 ≤ 15 ms",
            f"p95 {r500['p95_ms']} ms ({r500['rps']:.0f}/s achieved)",
            r500["p95_ms"] <= 15 and r500["rps"] >= 490,
        )
        row("RunAgent at 500/s: p99 ≤ 30 ms", f"p99 {r500['p99_ms']} ms", r500["p99_ms"] <= 30 and r500["rps"] >= 490)
        row(
            "RunAgent at 500/s: zero errors",
            f"{r500['count'] - r500['ok']} errors of {r500['count']}",
            r500["count"] == r500["ok"],
        )
    rsat = results.get("run-agent-result-saturation-c96")
    if rsat:
        row(
            "(context) RunAgent, result view, at saturation",
            f"{rsat['rps']:.0f} runs/s, {rsat['count'] - rsat['ok']} errors",
            None,
        )
    r500v = results.get("run-agent-result-500rps")
    if r500v:
        row(
            "(context) RunAgent, result view, at 500/s",
            f"p95 {r500v['p95_ms']} ms, p99 {r500v['p99_ms']} ms ({r500v['rps']:.0f}/s achieved)",
            None,
        )
    r250 = results.get("run-agent-250rps")
    if r250:
        row(
            "(context) RunAgent at 250/s: p95 ≤ 15 ms, p99 ≤ 30 ms",
            f"p95 {r250['p95_ms']} ms, p99 {r250['p99_ms']} ms ({r250['rps']:.0f}/s)",
            None,
        )
    c250 = results.get("create-agent-250rps")
    if c250:
        row(
            "(context) CreateAgent at 250/s: p95 ≤ 10 ms",
            f"p95 {c250['p95_ms']} ms ({c250['rps']:.0f}/s, {c250['count'] - c250['ok']} errors)",
            None,
        )
    c500 = results.get("create-agent-500rps")
    if c500:
        row(
            "CreateAgent (journaled) at 500/s: p95 ≤ 10 ms",
            f"p95 {c500['p95_ms']} ms ({c500['rps']:.0f}/s, {c500['count'] - c500['ok']} errors)",
            c500["p95_ms"] <= 10 and c500["count"] == c500["ok"],
        )
    if first_run:
        ok = all(t["succeeded"] for t in first_run["trials"])
        row(
            "Publish of a new version → first successful run < 1 s",
            f"worst {first_run['max_ms']:.0f} ms of {len(first_run['trials'])} trials",
            first_run["max_ms"] < 1000 and ok,
        )
    if SOAK_FILE.exists():
        soak = json.loads(SOAK_FILE.read_text())
        worst = max(soak["rss"].items(), key=lambda kv: abs(kv[1]["drift_pct"]))
        row(
            f"RSS flat ±10 % over {soak['seconds'] / 60:g} min at {soak['rps_target']}/s (make perf-soak)",
            f"worst drift {worst[0]} {worst[1]['drift_pct']:+.1f} % (max spread {worst[1]['spread_pct']} %); "
            f"{soak['rps']:.0f}/s achieved (capacity), {soak['count'] - soak['ok']} errors",
            all(abs(d["drift_pct"]) <= 10 for d in soak["rss"].values()),
        )
    return rows


def _cpu_table(results: list[dict[str, Any]]) -> list[str]:
    cols = [p for p in PROCESS_ORDER if any(p in r["cpu_seconds"] for r in results)]
    head = (
        "| run | calls | "
        + " | ".join(SHORT.get(c, c) for c in cols)
        + " | all Envoys | all services | ghz | total ms/call | busy cores |"
    )
    lines = [head, "| --- | ---: |" + " ---: |" * (len(cols) + 5)]
    for r in results:
        n = max(r["count"], 1)
        cpu = r["cpu_seconds"]
        per = [1000 * cpu.get(c, 0.0) / n for c in cols]
        envoys = sum(v for k, v in cpu.items() if k.startswith("envoy-")) * 1000 / n
        services = sum(v for k, v in cpu.items() if not k.startswith("envoy-") and k != "ghz" and k not in INFRA)
        total = sum(cpu.values()) * 1000 / n
        busy = sum(cpu.values()) / r["wall_seconds"]
        lines.append(
            f"| {r['label']} | {r['count']} | "
            + " | ".join(f"{v:.2f}" for v in per)
            + f" | {envoys:.2f} | {services * 1000 / n:.2f} | {1000 * cpu.get('ghz', 0) / n:.2f} | {total:.2f} |"
            + f" {busy:.2f} |"
        )
    return lines


def write_report() -> None:
    sweep = json.loads(SWEEP_FILE.read_text()) if SWEEP_FILE.exists() else None
    out = ["# Agent Factory — performance report", ""]
    out.append("Generated by `make perf` (`python -m perf.runner sweep`); `make perf-soak` adds the memory soak. "
               "Hand-written analysis (profiles, what each optimisation bought, what is left) comes from "
               "`perf/NOTES.md` and follows the measurements.")  # fmt: skip
    out.append("")
    if sweep:
        m = sweep["machine"]
        results = sweep["results"]
        by_label = {r["label"]: r for r in results}
        loads = [r["load_before"][0] for r in results]
        out += [
            f"Measured {m['date']} on {m['cpus']} × {m['cpu_model']}, Linux {m['kernel']}, Python {m['python']}, "
            f"commit {m['commit']}, {m.get('backend', 'sqlite')} backend. ghz runs on the same two cores as the "
            "mesh. Load average (1 min) at the start "
            f"of each run: {min(loads):.2f}–{max(loads):.2f} (it counts the mesh's threads from the run before, and "
            "other engineers' tests, which share this machine; per run in the table below and in "
            "perf/results/sweep.json).",
            "",
            "## Targets",
            "",
            "| target | measured | verdict |",
            "| --- | --- | --- |",
            *_target_rows(by_label, sweep.get("publish_to_first_run")),
            "",
            "## Latency and throughput",
            "",
            "`rps` is the rate ghz asked for (— = unthrottled, as fast as `c` concurrent calls allow); achieved is "
            "completed calls per second. Latency is per call (RunAgent: the whole server stream, create → "
            "SUCCEEDED).",
            "",
            "| run | scenario | rps | c | calls | errors | achieved/s | p50 ms | p95 ms | p99 ms | load |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in results:
            errs = r["count"] - r["ok"]
            detail = f" ({', '.join(f'{k}: {v}' for k, v in r['errors'].items())})" if errs and r["errors"] else ""
            out.append(
                f"| {r['label']} | {r['scenario']} | {r['rps_target'] or '—'} | {r['concurrency']} | {r['count']} | "
                f"{errs}{detail} | {r['rps']:.0f} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                f"{r['load_before'][0]:.2f} |"
            )
        out += [
            "",
            "## CPU per call, by process (ms of CPU per completed call)",
            "",
            "From /proc/<pid>/stat (utime+stime) of every supervised process before and after each run (pids from "
            "`supervisorctl status`, plus supervisord, which reads every program's output and writes the logs); ghz "
            "from its own rusage. gw = gateway Envoy, sc = sidecar Envoy, supd = supervisord, prom = Prometheus. "
            "`busy cores` = all of it / wall time: 2.0 is the whole machine.",
            "",
            *_cpu_table(results),
            "",
            "## Publish → first run",
            "",
            "A new version of a template (`perf-echo`, the echo-upper module with a fresh custom section, so a new "
            "digest the executors must fetch and compile) is published through the gateway, then run at once "
            "with RunAgent. The executors precompile on the registry's Watch event.",
            "",
            "| version | publish ms | ack → first run ms | publish → first run ms | succeeded |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        for t in sweep["publish_to_first_run"]["trials"]:
            out.append(f"| {t['version']} | {t['publish_ms']} | {t['ack_to_first_run_ms']} | "
                       f"{t['publish_to_first_run_ms']} | {t['succeeded']} |")  # fmt: skip
        if TRACED_FILE.exists():
            traced = json.loads(TRACED_FILE.read_text())
            out += [
                "",
                "## The cost of tracing every request (`make run`'s mesh)",
                "",
                "`make run` traces 100 % of requests (every Envoy and service exports spans to a local trace sink). "
                "The sweep above ran on the same mesh with the topology's `telemetry` section removed "
                "(`build/perf/topology.yaml`, from `python -m perf.topology`). The same RunAgent runs with "
                f"tracing on, measured {traced['machine']['date']}:",
                "",
                "| run | tracing | achieved/s | p50 ms | p95 ms | p99 ms | errors | CPU ms/call (all) "
                "| trace sink ms/call |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for t in traced["results"]:
                if "warmup" in t["label"]:
                    continue
                base = by_label.get(t["label"].removeprefix("traced-"))
                for row, mode in ((t, "on (100 %)"), (base, "off")):
                    if row is None:
                        continue
                    n = max(row["count"], 1)
                    out.append(
                        f"| {t['label'].removeprefix('traced-')} | {mode} | {row['rps']:.0f} | {row['p50_ms']} | "
                        f"{row['p95_ms']} | {row['p99_ms']} | {row['count'] - row['ok']} | "
                        f"{1000 * sum(row['cpu_seconds'].values()) / n:.2f} | "
                        f"{1000 * row['cpu_seconds'].get('trace-sink', 0.0) / n:.2f} |"
                    )
        out += ["", "## Bare wasmtime baseline (perf/sandbox)", "", sweep["sandbox_baseline"]]
    if SOAK_FILE.exists():
        soak = json.loads(SOAK_FILE.read_text())
        out += [
            "## Memory soak (`make perf-soak`)",
            "",
            f"{soak['machine']['date']}: `{soak['command']}` — {soak['count']} calls, {soak['count'] - soak['ok']} "
            f"errors, {soak['rps']:.0f}/s, p95 {soak['p95_ms']} ms, p99 {soak['p99_ms']} ms. RSS sampled every few "
            "seconds; compared from the first sample after the first minute to the last.",
            "",
            "| process | first MiB | last MiB | min MiB | max MiB | drift % | spread % |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, d in sorted(soak["rss"].items()):
            out.append(f"| {name} | {d['first_mib']} | {d['last_mib']} | {d['min_mib']} | {d['max_mib']} | "
                       f"{d['drift_pct']:+.1f} | {d['spread_pct']} |")  # fmt: skip
        out.append("")
    if sweep:
        out += ["## Exact commands", "", "From the repository root, with the mesh up (`make run`):", "", "```"]
        out += [r["command"] for r in sweep["results"]]
        out += ["```", ""]
    if NOTES.exists():
        out += [NOTES.read_text().rstrip(), ""]
    REPORT.write_text("\n".join(out))


def cmd_probe(args: argparse.Namespace) -> int:
    """One ghz run against the running mesh with CPU per call by process: for A/B comparisons while
    changing code (results go to perf/results/probe-*.json, which the report ignores)."""
    if args.scenario.startswith("run-agent"):
        pin_scheduler_weights()
    step = Step(args.scenario, f"probe-{args.scenario}", args.concurrency, args.rps, args.seconds)
    result = run_step(step)
    n = max(result.count, 1)
    per = {name: 1000 * cpu / n for name, cpu in result.cpu_seconds.items() if cpu > 0}
    print("    CPU ms/call: " + ", ".join(f"{SHORT.get(k, k)} {v:.2f}" for k, v in sorted(per.items())))
    busy = sum(result.cpu_seconds.values()) / result.wall_seconds
    print(f"    total {sum(per.values()):.2f} ms/call, busy cores {busy:.2f}")
    return 0 if result.error_count == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.runner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="the whole benchmark (make perf)")
    sweep.add_argument("--seconds", type=float, default=8.0, help="length of each fixed-rate run")
    sweep.add_argument("--quick", action="store_true", help="fewer rates")
    soak = sub.add_parser("soak", help="RSS of every process over a long fixed-rate run (make perf-soak)")
    soak.add_argument("--seconds", type=float, default=300.0)
    soak.add_argument("--rps", type=int, default=500)
    soak.add_argument("--sample-seconds", type=float, default=5.0)
    soak.add_argument("--quick", action="store_true", help="60 s instead of --seconds")
    traced = sub.add_parser("traced", help="RunAgent with make run's 100 % tracing (for its cost)")
    traced.add_argument("--seconds", type=float, default=8.0)
    traced.add_argument("--quick", action="store_true", help="accepted for PERF_ARGS; no effect")
    sub.add_parser("report", help="re-render perf/REPORT.md from perf/results/")
    probe = sub.add_parser("probe", help="one ghz run against the running mesh, CPU per call by process")
    probe.add_argument("scenario", help="a perf/scenarios/<name>.json stem, e.g. run-agent")
    probe.add_argument("-c", "--concurrency", type=int, default=64)
    probe.add_argument("--rps", type=int, default=0, help="0: as fast as the concurrency allows")
    probe.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    if args.command == "sweep":
        return cmd_sweep(args)
    if args.command == "soak":
        return cmd_soak(args)
    if args.command == "traced":
        return cmd_traced(args)
    if args.command == "probe":
        return cmd_probe(args)
    write_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
