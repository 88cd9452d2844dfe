"""In-process benchmark of the scheduler's gRPC servicer on the RunAgent path (issue 16, item 4).

The real SchedulerServicer, as `servicer.register` builds it, in front of the real SchedulerService on a
real SQLite journal, with a scripted executor that answers at once (perf/bench_journal.py's). RunAgent
is called straight on the servicer with a stand-in ServicerContext, so what is measured is the servicer
and the service (protobuf ⇄ domain, the federation decision, the journal), not gRPC's transport: a
change to the servicer shows here at its own size. CPU per call is this process's (every thread).

    .venv/bin/python -m perf.bench_servicer --calls 3000 [--peers] [--request-ids] [--view events]

`--peers` wires an adapter for another color (never called: the agents are this scheduler's own), as
in the blue/green mesh. Run it from another checkout's root (`cd /tmp/base && python -m
perf.bench_servicer`) to compare two versions of the code in alternating runs.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from perf.bench_journal import _Executors, _Templates
from services.scheduler import servicer as servicer_module
from services.scheduler.journal import Journal
from services.scheduler.service import SchedulerService, ServiceSettings


class _Context:
    """What the servicer reads of a grpc.aio.ServicerContext on this path."""

    def time_remaining(self) -> float:
        return 30.0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("user-agent", "bench"),)


class _Capture:
    """Stands in for grpc.aio.Server in `register`: keeps the servicer's RunAgent handler."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.handlers.update(handlers)


def _run_agent(service: SchedulerService, peers: Any) -> Callable[..., Any]:
    server = _Capture()
    servicer_module.register(service, peers)(server)  # type: ignore[arg-type]  # a capture, not a server
    return server.handlers["RunAgent"].unary_stream  # type: ignore[no-any-return]  # the bound method


def _peers(enabled: bool) -> Any:
    if not enabled:
        return None
    from services.scheduler import peers

    if hasattr(peers, "GrpcPeers"):
        from services.common.telemetry import Telemetry

        return peers.GrpcPeers("127.0.0.1:1", ["green"], "scheduler-blue", Telemetry.off())
    return peers.Peers("127.0.0.1:1", ["green"], "scheduler-blue")  # type: ignore[attr-defined]  # before the port


async def bench(calls: int, concurrency: int, with_peers: bool, request_ids: bool, view: int) -> dict[str, float]:
    journal = Journal.open(Path(tempfile.mkdtemp(prefix="bench-servicer-")))
    service = SchedulerService(journal, _Templates(), _Executors(), ServiceSettings())  # type: ignore[arg-type]
    await service.start()
    run_agent = _run_agent(service, _peers(with_peers))
    context = _Context()
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        request = pb.RunAgentRequest(
            template_name="echo", input=b"x" * 64, view=view,  # type: ignore[arg-type]  # the enum's int
            request_id=uuid.uuid4().hex if request_ids else "",
        )  # fmt: skip
        async with sem:
            async for _ in run_agent(request, context):
                pass

    await asyncio.gather(*(one() for _ in range(min(300, calls))))  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await service.stop(1.0)
    journal.close()
    return {"calls_per_s": calls / wall, "cpu_us_per_call": cpu / calls * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--peers", action="store_true", help="wire another color's adapter (as in blue/green)")
    parser.add_argument("--request-ids", action="store_true", help="give every call a new request_id")
    parser.add_argument("--view", choices=("events", "result"), default="result")
    args = parser.parse_args()
    import uvloop

    view = pb.RUN_AGENT_VIEW_EVENTS if args.view == "events" else pb.RUN_AGENT_VIEW_RESULT
    result = uvloop.run(bench(args.calls, args.concurrency, args.peers, args.request_ids, view))
    print(" ".join(f"{k}={v:.1f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
