"""A process of watchers for the scale curves: `python -m perf.scale.watchers templates|agent ADDR COUNT [ID]`
opens COUNT WatchTemplates (or WatchAgent of ID) streams, prints "ready" once they are open, and reads
everything until stdin closes. A process of its own, so the watchers' reading does not share a GIL with
the client whose latency is measured."""

from __future__ import annotations

import asyncio
import sys

import grpc
import grpc.aio

from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from agentfactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from agentfactory.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc


async def _read(call: grpc.aio.UnaryStreamCall) -> None:
    try:
        async for _ in call:
            pass
    except (grpc.aio.AioRpcError, asyncio.CancelledError):
        pass  # the end of the measurement cancels every stream


async def main(kind: str, addr: str, count: int, agent_id: str) -> None:
    async with grpc.aio.insecure_channel(addr) as channel:
        if kind == "templates":
            stub = reg_grpc.RegistryServiceStub(channel)
            calls = [stub.WatchTemplates(reg_pb.WatchTemplatesRequest(after_revision=1 << 40)) for _ in range(count)]
        else:
            sched = pb_grpc.SchedulerServiceStub(channel)
            calls = [sched.WatchAgent(pb.WatchAgentRequest(id=agent_id)) for _ in range(count)]
        readers = [asyncio.ensure_future(_read(call)) for call in calls]
        await channel.channel_ready()
        # A watch with nothing to replay sends no message (and no headers) until an event: give the server
        # time to take every stream, then say so (the caller waits a little more on its side).
        await asyncio.sleep(0.5 + count / 500)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for call in calls:
            call.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else ""))
