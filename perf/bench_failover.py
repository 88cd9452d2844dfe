"""Per-call Envoy CPU on the Run path with and without executor failover priorities.

    python -m perf.bench_failover [--calls 3000] [--rounds 3]

Brings up the mesh of tests/integration/mesh (real Envoys, tiny apps) with one executor per color,
twice: services.executor.failover off (one host per color cluster, plain retries) and on (the other
color as priority 1, retries through previous_priorities). It sends the same number of Run calls
through scheduler-blue's outbound listener and reads the CPU time (user+system, /proc) that the
scheduler-blue and executor-blue Envoys spent, per call. Health checks and keepalive PINGs run in
both, so their (per-interval, not per-call) cost is in both figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mesh.ca import issue_all
from mesh.envoy import EnvoyProcess
from mesh.methods import contracts
from mesh.render import render
from mesh.topology import load
from tests.integration.mesh.conftest import CHANNEL_OPTIONS, mesh_topology_dict
from tests.integration.mesh.tinyapp import TinyApp, call, wait_until

RUN = contracts()["executor"]["Run"]
MEASURED = ("scheduler-blue", "executor-blue")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(failover: bool, calls: int, root: Path) -> dict[str, float]:
    import grpc

    raw = mesh_topology_dict()
    executors = raw["services"]["executor"]["instances"]
    raw["services"]["executor"]["instances"] = [i for i in executors if i["id"] != "executor-blue-2"]
    raw["services"]["executor"]["failover"] = failover
    topo = load(raw)
    issue_all(topo, root / "certs")
    configs = render(topo, certs_dir=root / "certs", out_dir=root / "out")
    catalog = contracts()
    apps = {i.id: TinyApp(i.id, i.app, list(catalog[i.service].values())) for i in topo.instances()}
    envoys = {e: EnvoyProcess(cfg, root / "logs" / f"{e}.log") for e, cfg in configs.items()}
    try:
        for app in apps.values():
            app.start()
        for e in envoys.values():
            e.start()
        for e in envoys.values():
            e.wait_ready()
        port = topo.instance("scheduler-blue").outbound["executor"]
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
        assert wait_until(lambda: call(channel, RUN)[1].get("x-served-by") == "executor-blue", 30)
        for _ in range(200):  # warm-up
            call(channel, RUN)
        before = {e: _cpu_seconds(envoys[e].pid) for e in MEASURED}
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: call(channel, RUN)[0], range(calls)))
        after = {e: _cpu_seconds(envoys[e].pid) for e in MEASURED}
        assert all(c == grpc.StatusCode.OK for c in codes)
        channel.close()
        return {e: (after[e] - before[e]) / calls * 1e6 for e in MEASURED}
    finally:
        for e in envoys.values():
            e.stop()
        for app in apps.values():
            app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for failover in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                results[failover].append(measure(failover, args.calls, Path(tmp)))
    for failover, runs in results.items():
        cells = ", ".join(f"{e} {statistics.median(r[e] for r in runs):.1f} µs" for e in MEASURED)
        print(f"failover {'on ' if failover else 'off'}: Envoy CPU per Run call (median of {len(runs)}): {cells}")
        for e in MEASURED:
            print(f"    {e}: " + " ".join(f"{r[e]:.0f}" for r in runs))


if __name__ == "__main__":
    main()
