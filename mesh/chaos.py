"""Turn a sidecar's fault injection on or off at run time (for chaos tests and demos).

    python -m mesh.chaos executor-green abort 50 [--status 14]   # half the calls fail UNAVAILABLE
    python -m mesh.chaos executor-green delay 100 --ms 300       # every call waits 300 ms
    python -m mesh.chaos executor-green off

Every inbound sidecar carries a fault filter whose percentages are 0 in the config; this sets
the runtime keys that override them through the Envoy's loopback admin API (admin layer), so
nothing is re-rendered or restarted, and a restart of the Envoy turns chaos off again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mesh import DEFAULT_TOPOLOGY
from mesh.envoy import Admin
from mesh.topology import load

ABORT_PERCENT = "fault.http.abort.abort_percent"
ABORT_STATUS = "fault.http.abort.grpc_status"
DELAY_PERCENT = "fault.http.delay.fixed_delay_percent"
DELAY_MS = "fault.http.delay.fixed_duration_ms"


def abort(admin: Admin, percent: int, grpc_status: int = 14) -> None:
    admin.runtime_modify(**{ABORT_STATUS: grpc_status, ABORT_PERCENT: percent})


def delay(admin: Admin, percent: int, ms: int) -> None:
    admin.runtime_modify(**{DELAY_MS: ms, DELAY_PERCENT: percent})


def off(admin: Admin) -> None:
    admin.runtime_modify(**{ABORT_PERCENT: 0, DELAY_PERCENT: 0})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("instance", help="a sidecar's instance id, e.g. executor-green")
    parser.add_argument("action", choices=["abort", "delay", "off"])
    parser.add_argument("percent", type=int, nargs="?", default=100)
    parser.add_argument("--status", type=int, default=14, help="gRPC status for abort (14 = UNAVAILABLE)")
    parser.add_argument("--ms", type=int, default=500, help="delay in milliseconds")
    args = parser.parse_args(argv)
    topo = load(args.topology)
    try:
        admin = Admin(topo.instance(args.instance).admin)
    except KeyError:
        ids = ", ".join(i.id for i in topo.instances())
        print(f"unknown sidecar {args.instance!r}; sidecars: {ids}", file=sys.stderr)
        return 2
    if not 0 <= args.percent <= 100:
        print("percent must be 0..100", file=sys.stderr)
        return 2
    if args.action == "abort":
        abort(admin, args.percent, args.status)
    elif args.action == "delay":
        delay(admin, args.percent, args.ms)
    else:
        off(admin)
    print(f"{args.instance}: fault {args.action}" + ("" if args.action == "off" else f" {args.percent}%"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
