"""How late a WatchTemplates stream sees a publish, on the replica that published and on another one,
with the registry on PostgreSQL (a throwaway server, a signer and two registry replicas on loopback).

    PYTHONPATH=build/gen:. .venv/bin/python -m perf.bench_registry_watch [publishes]

Latency is from sending the publish to the watcher receiving it (so it includes the publish itself:
signing, the transaction). perf/BACKENDS.md has the figures.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

from agentfactory.registry.v1 import registry_service_pb2 as pb
from agentfactory.registry.v1 import registry_service_pb2_grpc as pb_grpc
from mesh.pglocal import LocalPostgres
from tests.harness import ServiceProcess, free_port
from tests.integration.registry.conftest import publish_requests


def _watch(stub: pb_grpc.RegistryServiceStub, key: str, seen: dict[tuple[str, str], float]) -> None:
    try:
        for event in stub.WatchTemplates(pb.WatchTemplatesRequest(after_revision=0), timeout=300):
            seen.setdefault((key, event.template.manifest.version), time.perf_counter())
    except grpc.RpcError:
        pass  # the registry stops at the end


def main(publishes: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="af-watch-bench-"))
    root.chmod(0o755)  # the server runs as `postgres` when we are root
    server = LocalPostgres(root / "pg", free_port())
    server.start()
    procs: list[ServiceProcess] = []
    try:
        signer = ServiceProcess("signer", root / "signer", {"AF_SIGNER_BACKEND": "local"}).start()
        procs.append(signer)
        for i in range(2):
            env = {"AF_SIGNER_ADDR": signer.addr, "AF_DATABASE_URL": server.dsn}
            procs.append(ServiceProcess("registry", root / f"registry-{i}", env).start())
        same, other = (pb_grpc.RegistryServiceStub(grpc.insecure_channel(p.addr)) for p in procs[1:])
        seen: dict[tuple[str, str], float] = {}
        for stub, key in ((same, "same"), (other, "other")):
            threading.Thread(target=_watch, args=(stub, key, seen), daemon=True).start()
        time.sleep(1)
        sent = {}
        for i in range(publishes):
            version = f"1.{i}.0"
            sent[version] = time.perf_counter()
            raw = json.dumps({"name": "watch-bench", "version": version}).encode()
            same.PublishTemplate(publish_requests(raw), timeout=10)
            time.sleep(0.05)
        time.sleep(1)
        for key in ("same", "other"):
            ms = sorted((seen[(key, v)] - t) * 1000 for v, t in sent.items() if (key, v) in seen)
            print(f"watch on the {key} replica: {len(ms)}/{publishes} seen, p50 {statistics.median(ms):.0f} ms, "
                  f"p95 {ms[max(int(len(ms) * 0.95) - 1, 0)]:.0f} ms")  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
