"""In-process benchmark of the scheduler's gRPC servicer on the RunAgent path (issue 16, item 4).

The real SchedulerServicer, as `servicer.register` builds it, in front of the real SchedulerService on a
real SQLite journal, with a scripted executor that answers at once (perf/bench_journal.py's). RunAgent
is called straight on the servicer with a stand-in ServicerContext, so what is measured is the servicer
and the service (protobuf ⇄ domain, the federation decision, the journal), not gRPC's transport: a
change to the servicer shows here at its own size. CPU per call is this process's (every thread).

    .venv/bin/python -m perf.bench_servicer --calls 3000 [--peers] [--request-ids] [--view events] [--servicer-only]

`--peers` wires an adapter for another color (never called: the agents are this scheduler's own), as
in the blue/green mesh. `--servicer-only` puts a service that answers at once behind the servicer, so
the servicer's own layer (conversions, the federation check) is all that is measured. To compare two
versions, run it from each checkout's root in turn (`git archive REV services perf | tar -x -C
/tmp/base`, copy this file there, `cd /tmp/base && python -m perf.bench_servicer`), alternating.
--request-ids with --peers asks the (unreachable) peer for every key: not the owned-agent path.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from perf.bench_journal import _Executors, _Templates
from services.scheduler import servicer as servicer_module
from services.scheduler.domain import Agent, AgentState
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

    adapter = getattr(peers, "GrpcPeers", None) or peers.Peers  # the adapter's name before the Peers port
    try:
        from services.common.telemetry import Telemetry  # channels take it since the service kit
    except ImportError:
        return adapter("127.0.0.1:1", ["green"], "scheduler-blue")
    return adapter("127.0.0.1:1", ["green"], "scheduler-blue", Telemetry.off())


class _Instant:
    """--servicer-only: a SchedulerService whose RunAgent is two ready events (the agent as created and
    as it ended), so what is measured is the servicer's own layer: conversions and the federation check."""

    def __init__(self) -> None:
        try:
            from services.scheduler.ports import AgentChanged
        except ImportError:  # before the Peers port it lived in book.py
            from services.scheduler.book import AgentChanged  # type: ignore[attr-defined,no-redef]
        agent = Agent("a" * 32, "echo", "1.0.0", "", b"x" * 64, {}, False, 5000, time.time())
        done = dataclasses.replace(agent, state=AgentState.SUCCEEDED, output=b"x" * 64, finish_time=time.time())
        self._events = (AgentChanged(agent), AgentChanged(done))

    async def run(self, spec: Any, timeout: float | None, *, result_only: bool = False) -> AsyncIterator[Any]:
        for event in self._events:
            yield event


async def bench(
    calls: int, concurrency: int, with_peers: bool, request_ids: bool, view: int, servicer_only: bool
) -> dict[str, float]:
    journal = Journal.open(Path(tempfile.mkdtemp(prefix="bench-servicer-")))
    service = SchedulerService(journal, _Templates(), _Executors(), ServiceSettings())  # type: ignore[arg-type]
    await service.start()
    run_agent = _run_agent(_Instant() if servicer_only else service, _peers(with_peers))  # type: ignore[arg-type]
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
    parser.add_argument("--servicer-only", action="store_true", help="a service that answers at once (see _Instant)")
    args = parser.parse_args()
    import uvloop

    view = pb.RUN_AGENT_VIEW_EVENTS if args.view == "events" else pb.RUN_AGENT_VIEW_RESULT
    result = uvloop.run(bench(args.calls, args.concurrency, args.peers, args.request_ids, view, args.servicer_only))
    print(" ".join(f"{k}={v:.1f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
