"""Shift blue/green traffic live, without restarting anything.

    python -m mesh.weights                             # show the current split
    python -m mesh.weights scheduler 90 10             # blue 90 %, green 10 % (colors in topology order)
    python -m mesh.weights executor blue=0 green=100   # the same, by name
    ... --wait 10                                      # and confirm every Envoy applied it

How: every caller of a split service (the gateway for scheduler/executor, the schedulers'
sidecars for executor) reads its routes from a file through file-based RDS. This rewrites
those files by atomic rename; Envoy's watch sees the rename and swaps the route table.
In-flight requests finish on the route they started with and new ones use the new weights, so
a shift fails no request. The split is also saved in ``build/mesh/weights.json`` so a later
``make mesh`` re-render keeps it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from mesh import DEFAULT_OUT_DIR, DEFAULT_TOPOLOGY
from mesh.envoy import Admin
from mesh.render import current_weights, save_weights, write_routes
from mesh.topology import Topology, TopologyError, check_weights, load


def parse_split(topo: Topology, service: str, values: Sequence[str]) -> dict[str, int]:
    svc = topo.services.get(service)
    if svc is None or not svc.colors:
        split = ", ".join(topo.split_services()) or "none"
        raise TopologyError(f"{service!r} is not split blue/green (split services: {split})")
    try:
        if all("=" in v for v in values):
            split = {k: int(w) for k, w in (v.split("=", 1) for v in values)}
        elif len(values) == len(svc.colors):
            split = dict(zip(svc.colors, (int(v) for v in values), strict=True))
        else:
            raise TopologyError(f"give {len(svc.colors)} weights for {list(svc.colors)}, or color=weight pairs")
    except ValueError as exc:
        raise TopologyError(f"weights must be integers: {exc}") from exc
    check_weights(svc, split)
    return split


def set_weights(topo: Topology, out_dir: Path, service: str, split: Mapping[str, int]) -> list[Path]:
    """Persist the split and rewrite the route files; returns the files that changed."""
    check_weights(topo.services[service], split)
    weights = current_weights(topo, out_dir)
    weights[service] = dict(split)
    changed = write_routes(topo, out_dir, weights)
    save_weights(out_dir, weights)
    return changed


def _admin_port(topo: Topology, envoy_id: str) -> int:
    if envoy_id == topo.gateway.id:
        return topo.gateway.admin
    return topo.instance(envoy_id).admin


def wait_applied(topo: Topology, files: Sequence[Path], timeout: float = 10.0) -> list[str]:
    """Poll each affected Envoy's admin API until it reports the new route version.

    Returns the Envoys that had not applied it in time (or were unreachable: not running).
    """
    pending: dict[tuple[str, str], str] = {}
    for path in files:
        doc = yaml.safe_load(path.read_text())
        envoy_id = path.parent.parent.name
        pending[(envoy_id, doc["resources"][0]["name"])] = doc["version_info"]
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for (envoy_id, route), version in list(pending.items()):
            try:
                if Admin(_admin_port(topo, envoy_id)).route_versions().get(route) == version:
                    del pending[(envoy_id, route)]
            except OSError:
                pass
        if pending:
            time.sleep(0.05)
    return sorted({envoy_id for envoy_id, _ in pending})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh.weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="confirm running Envoys applied it")
    parser.add_argument("service", nargs="?", help="a blue/green service, e.g. scheduler or executor")
    parser.add_argument("weights", nargs="*", help="weights in color order (90 10) or color=weight pairs")
    args = parser.parse_args(argv)
    topo = load(args.topology)
    if not args.service:
        for svc, split in current_weights(topo, args.out_dir).items():
            print(f"{svc:<10} " + "  ".join(f"{color}={w}" for color, w in split.items()))
        return 0
    if not (args.out_dir / topo.gateway.id / "envoy.yaml").exists():
        print(f"nothing rendered in {args.out_dir}: run `make mesh` first", file=sys.stderr)
        return 2
    try:
        split = parse_split(topo, args.service, args.weights)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    changed = set_weights(topo, args.out_dir, args.service, split)
    shown = "  ".join(f"{c}={w}" for c, w in split.items())
    print(f"{args.service}: {shown} ({len(changed)} route file(s) rewritten)")
    if args.wait and changed:
        late = wait_applied(topo, changed, args.wait)
        if late:
            print(f"not confirmed within {args.wait}s by: {', '.join(late)} (not running?)", file=sys.stderr)
            return 1
        print(f"applied live by {len({p.parent.parent.name for p in changed})} Envoy(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
