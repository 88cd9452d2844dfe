"""Copy the alert and recording rules and the Grafana dashboards into the Helm chart.

    python -m observability.chart           # write helm/agentfactory/files/observability/
    python -m observability.chart --check   # exit 1 if the chart's copies differ from observability/

Helm reads only files inside the chart, so the chart carries copies; observability/ stays the one
source (the PrometheusRule and the dashboards ConfigMap are rendered from these copies, and
`make helm-lint` and the unit tests fail when a copy is stale).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mesh import REPO
from observability.render import HERE, RULES_DIR

CHART_FILES = REPO / "helm" / "agentfactory" / "files" / "observability"
DASHBOARDS_DIR = HERE / "dashboards"


def sources() -> dict[str, Path]:
    """Chart-relative name -> source file."""
    files = {f"rules/{p.name}": p for p in sorted(RULES_DIR.glob("*.yml"))}
    files |= {f"dashboards/{p.name}": p for p in sorted(DASHBOARDS_DIR.glob("*.json"))}
    return files


def stale(dest: Path = CHART_FILES) -> list[str]:
    want = sources()
    have = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()} if dest.exists() else set()
    out = sorted(n for n, src in want.items() if not (dest / n).exists() or (dest / n).read_bytes() != src.read_bytes())
    return out + sorted(have - set(want))


def write(dest: Path = CHART_FILES) -> None:
    want = sources()
    for name, src in want.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(src.read_bytes())
    for p in dest.rglob("*"):
        if p.is_file() and str(p.relative_to(dest)) not in want:
            p.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observability.chart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale copies")
    args = parser.parse_args(argv)
    if args.check:
        late = stale()
        if late:
            print(
                f"stale in {CHART_FILES.relative_to(REPO)}: {', '.join(late)} (run `make helm-files`)", file=sys.stderr
            )
            return 1
        return 0
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
