"""`make perf-backends`: the embedded mode (SQLite) against PostgreSQL on the benchmark mesh, in
alternating rounds (ABAB) so the machine's noise shows, and the take-over after a scheduler's SIGKILL.

    python -m perf.backends measure BACKEND ROUND [--seconds 8]   # one round against the running mesh
    python -m perf.backends takeover [--backlog 1500]             # on a `make run BACKEND=postgres` mesh
    python -m perf.backends report                                # markdown tables from perf/results/backends/
    python -m perf.backends clean                                 # forget the previous rounds

The Makefile brings the mesh up for each round (`make run BACKEND=... MESH_TOPOLOGY=build/perf/topology.yaml`)
and stops it between rounds, so every round starts the same way. CPU per call is every supervised
process's (PostgreSQL's backends, checkpointer and WAL writer included, perf/procs.py) except ghz's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mesh.pglocal import LocalPostgres
from mesh.topology import load
from perf import procs
from perf.procs import REPO
from perf.runner import RESULTS, Step, machine, pin_scheduler_weights, run_step

OUT = RESULTS / "backends"
TAKEOVER_FILE = OUT / "takeover.json"
POSTGRES_DIR = REPO / "var" / "postgres"  # `make run BACKEND=postgres` (the Makefile's MESH_VAR)
TOPOLOGY = REPO / "mesh" / "topology.yaml"
BACKENDS = ("sqlite", "postgres")
UNFINISHED = "state IN (1, 2)"  # PENDING, RUNNING (services/scheduler/domain.py)
SCENARIOS = (
    ("run-agent-100rps", "RunAgent at 100/s (the CI gate's rate)"),
    ("run-agent-200rps", "RunAgent at 200/s"),
    ("run-agent-saturation-c32", "RunAgent at saturation (c=32)"),
    ("create-agent-100rps", "CreateAgent at 100/s"),
    ("create-agent-saturation-c32", "CreateAgent at saturation (c=32, a fixed total)"),
)


def round_steps(prefix: str, seconds: float) -> list[Step]:
    """One round. A CreateAgent's CPU is counted until its run has finished (cpu_through_drain): a
    create is acknowledged once journaled, and the dispatch and the run's journal writes follow."""
    s = seconds
    return [
        Step("run-agent", f"{prefix}warmup", 16, seconds=max(5.0, s / 2)),
        Step("run-agent", f"{prefix}run-agent-100rps", 64, rps=100, seconds=s),
        Step("run-agent", f"{prefix}run-agent-200rps", 64, rps=200, seconds=s),
        Step("run-agent", f"{prefix}run-agent-saturation-c32", 32, seconds=s),
        Step("create-agent", f"{prefix}create-agent-100rps", 16, rps=100, seconds=s, drain=True,
             cpu_through_drain=True),
        Step("create-agent", f"{prefix}create-agent-saturation-c32", 32, total=int(s * 250), drain=True,
             cpu_through_drain=True),
    ]  # fmt: skip


def settled_pids(limit: float = 60.0) -> dict[str, int]:
    """The supervised pids once no program is still STARTING: `make run` returns when every service
    answers its health check, which can be before supervisord counts it RUNNING (its startsecs), and a
    process not yet RUNNING would be missing from the CPU snapshots."""
    deadline = time.monotonic() + limit
    while True:
        status = procs.supervisor_status()
        if not any(state in ("STARTING", "BACKOFF") for state in status.values()) or time.monotonic() > deadline:
            return procs.supervised_pids()
        time.sleep(0.5)


def cmd_measure(args: argparse.Namespace) -> int:
    pids = settled_pids()
    if "scheduler-blue" not in pids:
        print("the mesh is not up: `make run MESH_TOPOLOGY=build/perf/topology.yaml`", file=sys.stderr)
        return 2
    running = "postgres" if "postgres" in pids else "sqlite"
    if running != args.backend:
        print(f"the mesh runs on {running}, not {args.backend}: bring it up with "
              f"`make run BACKEND={args.backend} MESH_TOPOLOGY=build/perf/topology.yaml`", file=sys.stderr)  # fmt: skip
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    pin_scheduler_weights()
    print(f"round {args.round} on {args.backend}, load average {procs.load_average()}", flush=True)
    results = [asdict(run_step(step)) for step in round_steps(f"backends/r{args.round}-{args.backend}-", args.seconds)]
    record = {"backend": args.backend, "round": args.round, "machine": machine(), "results": results}
    (OUT / f"round-{args.round}-{args.backend}.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


# --- take-over -------------------------------------------------------------------------------------


def _scalar(db: LocalPostgres, sql: str) -> str:
    return db.psql(sql, database="af_scheduler")


def _wait(db: LocalPostgres, count_sql: str, below: int, since: float, limit: float) -> float | None:
    """Seconds from `since` until `count_sql` counts fewer than `below` (polled every 100 ms), None
    past `limit`."""
    while time.monotonic() - since < limit:
        if int(_scalar(db, count_sql)) < below:
            return time.monotonic() - since
        time.sleep(0.1)
    return None


def _lease_seconds(pid: int) -> str:
    """The scheduler's AF_SCHEDULER_LEASE_SECONDS as its process has it (the topology may set it)."""
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if item.startswith(b"AF_SCHEDULER_LEASE_SECONDS="):
            return item.split(b"=", 1)[1].decode()
    return "10 (the default)"


def cmd_takeover(args: argparse.Namespace) -> int:
    """A backlog of created agents on scheduler-blue, then SIGKILL it: how long until another replica
    has claimed every agent it owned (its leases expire; supervisord restarts blue as a new owner, and
    green is live), and until all of them have ended."""
    pids = settled_pids()
    if "postgres" not in pids:
        print("take-over needs the mesh on PostgreSQL (make run BACKEND=postgres)", file=sys.stderr)
        return 2
    topo = load(TOPOLOGY)
    assert topo.database is not None
    db = LocalPostgres(POSTGRES_DIR, topo.database.port)
    OUT.mkdir(parents=True, exist_ok=True)
    pin_scheduler_weights()
    # Unthrottled creates are acknowledged faster than they run: the backlog is what blue will orphan.
    step = Step("create-agent", "backends/takeover-backlog", 32, total=args.backlog)
    backlog = run_step(step)
    lease = _lease_seconds(pids["scheduler-blue"])
    os.kill(pids["scheduler-blue"], signal.SIGKILL)
    killed = time.monotonic()
    # Its rows stop changing at the kill; supervisord's new scheduler-blue owns nothing yet.
    rows = _scalar(db, f"SELECT owner, count(*) FROM agents WHERE {UNFINISHED} AND owner LIKE 'scheduler-blue-%' "
                       "GROUP BY owner ORDER BY count(*) DESC LIMIT 1")  # fmt: skip
    if not rows:
        print("no unfinished agent on scheduler-blue at the kill: nothing to take over", file=sys.stderr)
        return 1
    victim, orphans = rows.split("|")
    seqs = _scalar(db, f"SELECT string_agg(seq::text, ',') FROM agents WHERE owner = '{victim}' AND {UNFINISHED}")
    in_orphans = f"seq = ANY('{{{seqs}}}'::bigint[])"
    held = f"SELECT count(*) FROM agents WHERE owner = '{victim}' AND {UNFINISHED}"
    first = _wait(db, held, int(orphans), killed, args.limit)
    claimed = _wait(db, held, 1, killed, args.limit)
    ended = _wait(db, f"SELECT count(*) FROM agents WHERE {in_orphans} AND {UNFINISHED}", 1, killed, args.limit)
    by_final = f"SELECT split_part(owner, '-', 2) || '/' || state AS s, count(*) AS n FROM agents WHERE {in_orphans}"
    outcome = _scalar(db, f"SELECT string_agg(s || ':' || n, ',') FROM ({by_final} GROUP BY 1 ORDER BY 1) t")
    record = {
        "machine": machine(),
        "backlog_command": backlog.command,
        "backlog_rps": backlog.rps,
        "victim": victim,
        "orphans": int(orphans),
        "first_claim_s": None if first is None else round(first, 2),
        "all_claimed_s": None if claimed is None else round(claimed, 2),
        "all_ended_s": None if ended is None else round(ended, 2),
        "outcome": outcome,  # <color of the final owner>/<state>:<count>
        "lease_seconds": lease,
    }
    TAKEOVER_FILE.write_text(json.dumps(record, indent=1) + "\n")
    print(f"take-over: {orphans} orphans of {victim}; first claimed after {record['first_claim_s']} s, all "
          f"after {record['all_claimed_s']} s, all ended after {record['all_ended_s']} s; {outcome}")  # fmt: skip
    return 0 if claimed is not None and ended is not None else 1


# --- the report ------------------------------------------------------------------------------------


def _rounds() -> list[dict[str, Any]]:
    files = sorted(OUT.glob("round-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    return [json.loads(p.read_text()) for p in files]


def _per_call(result: dict[str, Any], name: str | None = None) -> float:
    cpu: dict[str, float] = result["cpu_seconds"]
    used = cpu.get(name, 0.0) if name else sum(v for k, v in cpu.items() if k != "ghz")
    return 1000 * used / max(int(result["ok"]), 1)


def report() -> str:
    rounds = _rounds()
    out: list[str] = []
    for scenario, title in SCENARIOS:
        out += [
            f"**{title}**",
            "",
            "| round | backend | achieved/s | p50 ms | p95 ms | p99 ms | errors | CPU ms/call (mesh) | scheduler "
            "| PostgreSQL | registry | load |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rounds:
            res = next((x for x in r["results"] if x["label"].endswith(scenario)), None)
            if res is None:
                continue
            pg = f"{_per_call(res, 'postgres'):.2f}" if r["backend"] == "postgres" else "–"
            out.append(
                f"| {r['round']} | {r['backend']} | {res['rps']:.0f} | {res['p50_ms']} | {res['p95_ms']} | "
                f"{res['p99_ms']} | {res['count'] - res['ok']} | {_per_call(res):.2f} | "
                f"{_per_call(res, 'scheduler-blue'):.2f} | {pg} | {_per_call(res, 'registry'):.2f} | "
                f"{res['load_before'][0]:.2f} |"
            )
        out.append("")
    sat = {b: [next(x["rps"] for x in r["results"] if x["label"].endswith("run-agent-saturation-c32"))
               for r in rounds if r["backend"] == b] for b in BACKENDS}  # fmt: skip
    if all(sat.values()):
        a, b = statistics.mean(sat["sqlite"]), statistics.mean(sat["postgres"])
        out.append(f"RunAgent at saturation, mean of the rounds: SQLite {a:.0f}/s, PostgreSQL {b:.0f}/s "
                   f"({100 * (b - a) / a:+.1f} %; the target is no worse than -15 %).")  # fmt: skip
        out.append("")
    if TAKEOVER_FILE.exists():
        t = json.loads(TAKEOVER_FILE.read_text())
        out += [
            f"Take-over: `{t['backlog_command']}` ({t['backlog_rps']:.0f} creates/s), then SIGKILL of scheduler-blue "
            f"with {t['orphans']} unfinished agents: first claimed after {t['first_claim_s']} s, all claimed after "
            f"{t['all_claimed_s']} s, all ended after {t['all_ended_s']} s (lease {t['lease_seconds']} s; final "
            f"owner color/state: {t['outcome']}).",
            "",
        ]
    out += ["Commands (each round; from the repository root, the mesh up):", "", "```"]
    if rounds:
        up = ["make", "run", f"BACKEND={rounds[0]['backend']}", "MESH_TOPOLOGY=build/perf/topology.yaml"]
        out += [shlex.join(up)]
        out += [x["command"] for x in rounds[0]["results"]]
    out += ["```", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.backends", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    measure = sub.add_parser("measure", help="one round against the running mesh")
    measure.add_argument("backend", choices=BACKENDS)
    measure.add_argument("round", type=int)
    measure.add_argument("--seconds", type=float, default=8.0, help="length of each fixed-rate run")
    measure.add_argument("--quick", action="store_true", help="4 s runs (PERF_ARGS)")
    takeover = sub.add_parser("takeover", help="SIGKILL scheduler-blue under a backlog (PostgreSQL mesh)")
    takeover.add_argument("--backlog", type=int, default=1500, help="agents created before the kill")
    takeover.add_argument("--limit", type=float, default=120.0, help="seconds to wait for each stage")
    sub.add_parser("report", help="markdown tables from perf/results/backends/")
    sub.add_parser("clean", help="forget the previous rounds")
    args = parser.parse_args(argv)
    if args.command == "measure":
        if args.quick:
            args.seconds = 4.0
        return cmd_measure(args)
    if args.command == "takeover":
        return cmd_takeover(args)
    if args.command == "clean":
        for old in OUT.glob("*.json"):
            old.unlink()
        return 0
    text = report()
    (OUT / "REPORT.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
