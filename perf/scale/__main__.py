"""`make perf-scale`: how each cost grows with its work (issue 15), written to perf/SCALE.md.

    python -m perf.scale                     # every curve at its default points (about 15-25 min on 2 cores)
    python -m perf.scale --quick             # the smaller points only
    python -m perf.scale --only listings,journal_size
    python -m perf.scale report              # re-render perf/SCALE.md from perf/results/scale.json

Each curve's table gives every point's value and its ratio to the smallest point ("x1.0" = flat).
Results merge into perf/results/scale.json, so one curve can be re-measured alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from perf.scale import curves

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "perf" / "results" / "scale.json"
REPORT = REPO / "perf" / "SCALE.md"

Curve = Callable[[list[int], Path], list[curves.Row]]
# name: (function, default points, quick points, what it shows, which measures should stay flat)
CURVES: dict[str, tuple[Curve, list[int], list[int], str, list[str]]] = {
    "executor_startup": (
        curves.executor_startup, [10, 100, 1_000, 10_000], [10, 100, 1_000],
        "Executor start-up against the catalog (templates published, each with its own module), the median of "
        "three starts per point: seconds from spawn to SERVING with a cold data directory, seconds until the "
        "background warm-up ended (it loads most recent first into a 32 MiB memory budget), and the executor's "
        "RSS then.",
        ["serving_s", "rss_mb"],
    ),
    "listings": (
        curves.listings, [10_000, 100_000, 1_000_000], [10_000, 100_000],
        "One ListAgents page (50) against the agents in the SQLite journal (ten templates, twenty label "
        "values, 1 % RUNNING): median ms of the first page or a page from the middle (keyset cursor), by "
        "filter; a label that matches nothing; a creation-time window. From 10,000 agents on every page is "
        "full (at 1,000 the 1 % RUNNING filter returns 10 rows, so a smaller point would compare pages of "
        "different sizes).",
        ["state_running_first_ms", "state_succeeded_deep_ms", "template_deep_ms", "label_deep_ms",
         "label_no_match_ms", "created_window_ms"],
    ),
    "journal_size": (
        curves.journal_size, [10_000, 30_000, 100_000, 300_000], [10_000, 30_000],
        "The journal's files (database + WAL) under a constant load — agents created, run and finished "
        "through the journal's own writes, 1,000 at a time, a retention pass after each thousand — with "
        "retention keeping the newest 2,000 finished agents of the template (count rule) and the newest 5,000 "
        "tombstones of expired ids. The first point is already past both bounds (before it, the journal "
        "fills up to them).",
        ["journal_mb"],
    ),
    "publish_watchers": (
        curves.publish_with_watchers, [10, 100, 1_000], [10, 100],
        "PublishTemplate latency (median ms of 15) with that many WatchTemplates streams open and reading.",
        ["publish_ms"],
    ),
    "cancel_watchers": (
        curves.cancel_with_watchers, [10, 100, 1_000], [10, 100],
        "CancelAgent latency (median ms of 5) of a running agent with that many WatchAgent streams of it "
        "open and reading.",
        ["cancel_ms"],
    ),
    "module_size": (
        curves.module_sizes, [10_000, 100_000, 1_000_000, 8_000_000], [10_000, 100_000, 1_000_000],
        "Compiling a module of mostly code against its size (10 KB to the policy's 8 MiB cap): compile "
        "time and compiled size, and both per KiB of wasm (flat per KiB = linear in what the policy admits; "
        "the executor's cache counts compiled bytes against AF_EXECUTOR_MODULE_MEMORY_BYTES).",
        ["compile_ms_per_kib", "compiled_per_wasm"],
    ),
}  # fmt: skip


def _load() -> dict[str, object]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def measure(names: list[str], quick: bool) -> None:
    results = _load()
    for name in names:
        fn, points, quick_points, _, _ = CURVES[name]
        work = curves.scratch()
        began = time.perf_counter()
        print(f"[perf-scale] {name} at {quick_points if quick else points} ...", flush=True)
        try:
            rows = fn(quick_points if quick else points, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results[name] = {"rows": rows, "seconds": round(time.perf_counter() - began, 1), "quick": quick,
                         "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
        for point, values in rows:
            print(f"  {point:>9}: " + ", ".join(f"{k}={v:.3g}" for k, v in values.items()), flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


def render() -> str:
    results = _load()
    out = [
        "# Costs against their work (issue 15)",
        "",
        "Written by `make perf-scale` (`python -m perf.scale`; `--quick` for the smaller points, `--only a,b` for "
        "some curves, `report` to re-render from `perf/results/scale.json`). Each value is followed by its ratio "
        "to the smallest point; the measures marked * are the ones that should stay flat (within 2x).",
        "",
        f"Machine: {results.get('machine', 'unknown')}, shared with other work while measured (expect noise "
        "of tens of percent on the latency rows).",
        "",
        "What issue 15 measured before the changes it asked for: executor SERVING 0.6 s at 10 templates, 1.9 s at "
        "1,000, 5.3 s at 3,000 (everything compiled before SERVING); a filtered ListAgents page 9 -> 155 ms from "
        "1k to 100k agents and a label that matches nothing 5 -> 50 ms; the journal never pruned; a publish "
        "206-237 ms with 500 watchers (32 ms with 10) and a cancel 210-300 ms with 500 (18-22 ms with 10). "
        "Now: SERVING once the keys are fetched, modules warmed in the background within a byte budget; every "
        "list filter on an index in page order with keyset pages; retention by age and/or count with bounded "
        "tombstones; watchers fed by a delivery task a slice at a time, each event encoded once.",
        "",
    ]
    for name, (_, _, _, what, flat) in CURVES.items():
        entry = results.get(name)
        out += [f"## {name}", "", what, ""]
        if not isinstance(entry, dict):
            out += ["(not measured yet)", ""]
            continue
        rows = entry["rows"]
        keys = list(rows[0][1])
        out.append("| point | " + " | ".join(k + (" *" if k in flat else "") for k in keys) + " |")
        out.append("| ---: | " + " | ".join("---:" for _ in keys) + " |")
        base = rows[0][1]
        for point, values in rows:
            cells = []
            for k in keys:
                ratio = values[k] / base[k] if base[k] else float("nan")
                cells.append(f"{values[k]:.3g} (x{ratio:.2f})")
            out.append(f"| {point:,} | " + " | ".join(cells) + " |")
        worst = {k: max(v[k] / rows[0][1][k] for _, v in rows if rows[0][1][k]) for k in flat if k in keys}
        verdict = ", ".join(f"{k} x{r:.2f}" + ("" if r <= 2 else " (over 2x)") for k, r in worst.items())
        note = " (quick points)" if entry.get("quick") else ""
        out += [
            "",
            f"Largest ratio of the flat measures: {verdict}. Measured {entry['when']} in {entry['seconds']} s{note}.",
            "",
        ]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.scale")
    parser.add_argument("command", nargs="?", default="measure", choices=["measure", "report"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated curve names: " + ", ".join(CURVES))
    args = parser.parse_args(argv)
    if args.command == "measure":
        names = [n for n in args.only.split(",") if n] or list(CURVES)
        unknown = [n for n in names if n not in CURVES]
        if unknown:
            parser.error(f"unknown curve(s): {', '.join(unknown)}")
        measure(names, args.quick)
    REPORT.write_text(render() + "\n")
    print(f"[perf-scale] wrote {REPORT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
