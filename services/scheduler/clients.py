"""Adapters behind the scheduler's ports: the registry (template resolution) and executors, over gRPC.

In the mesh each address is the scheduler's own sidecar on loopback; the sidecar originates mTLS and
balances across executor endpoints, so one address is the normal case and several also work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import grpc

from agentfactory.executor.v1 import executor_service_pb2 as ex_pb
from agentfactory.executor.v1 import executor_service_pb2_grpc as ex_grpc
from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from agentfactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from services.common import errors, mesh_headers
from services.common.cache import LruTtlCache
from services.common.channels import aio_channel
from services.common.grpc_errors import error_from_rpc
from services.common.telemetry import Telemetry
from services.scheduler.domain import RunFinished, RunOutcome, TemplateInfo
from services.scheduler.ports import Accepted, Ended, ExecutorEvent, Log, Output, RunSpec, Started


class RegistryTemplates:
    """Resolves name@version (or latest) through the registry's GetTemplate, behind a small TTL cache.

    Exact versions are immutable, but they can be deprecated, and "latest" moves on publish: a short
    TTL bounds how long either change takes to be seen without a registry call per create."""

    def __init__(self, address: str, telemetry: Telemetry, ttl_seconds: float = 2.0, max_entries: int = 1024) -> None:
        self.address = address
        self._channel = aio_channel(address, telemetry)
        self._stub = reg_grpc.RegistryServiceStub(self._channel)
        self._cache: LruTtlCache[tuple[str, str], TemplateInfo] = LruTtlCache(
            "scheduler_templates", max_entries, ttl_seconds
        )

    async def resolve(self, name: str, version: str, timeout: float) -> TemplateInfo:
        key = (name, version)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        ref = f"{name}@{version or 'latest'}"
        try:
            reply = await self._stub.GetTemplate(reg_pb.GetTemplateRequest(name=name, version=version), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(
                exc, f"the registry at {self.address} resolving {ref}", field="template_name"
            ) from None
        template = reply.template
        if template.deprecated and version:
            raise errors.FailedPrecondition(
                f"template {name}@{version} is deprecated ({template.deprecation_reason or 'no reason given'}); "
                "create agents from a newer version"
            )
        manifest = template.manifest
        if template.signature_revoked:
            # No executor would run it: refuse now rather than journal an agent bound to fail.
            raise errors.FailedPrecondition(
                f"template {manifest.name}@{manifest.version} is signed by key {template.signature.key_id} "
                f"v{template.signature.key_version}, which is revoked; an admin re-signs it "
                f"(afctl templates resign {manifest.name}@{manifest.version})"
            )
        info = TemplateInfo(manifest.name, manifest.version, manifest.retryable, manifest.limits.timeout_ms)
        self._cache.put(key, info)
        return info

    async def close(self) -> None:
        await self._channel.close()


def _event(resp: ex_pb.RunEvent) -> ExecutorEvent | None:
    kind = resp.WhichOneof("event")
    if kind == "accepted":
        return Accepted(resp.accepted.executor_id)
    if kind == "started":
        return Started()
    if kind == "output":
        return Output(resp.output.data)
    if kind == "log":
        return Log(resp.log.level, resp.log.message)
    if kind == "tool_call":
        call = resp.tool_call
        verdict = "allowed" if call.allowed else "denied by policy"
        return Log("info" if call.allowed else "warn", f"tool {call.tool} {verdict}: {call.detail}".rstrip(": "))
    if kind == "finished":
        fin = resp.finished
        try:
            outcome = RunOutcome(fin.outcome)
        except ValueError:
            outcome = RunOutcome.FAILED
        return RunFinished(outcome, fin.exit_code, fin.trap, fin.reason, fin.fuel_used)
    return None  # an event kind newer than this scheduler: nothing to do with it


class GrpcRun:
    def __init__(self, call: grpc.aio.UnaryStreamCall[ex_pb.RunRequest, ex_pb.RunResponse]) -> None:
        self._call = call
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()

    async def events(self) -> AsyncIterator[ExecutorEvent]:
        try:
            try:
                async for resp in self._call:
                    for pb_event in resp.events:
                        event = _event(pb_event)
                        if event is not None:
                            yield event
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._cancelled and not (task and task.cancelling()):
                    yield Ended("CANCELLED", "cancelled by the scheduler")
                    return
                raise
            except grpc.aio.AioRpcError as exc:
                executor = dict(exc.trailing_metadata() or ()).get(mesh_headers.EXECUTOR, "")
                yield Ended(exc.code().name, exc.details() or "", str(executor))
                return
            code = await self._call.code()
            yield Ended(code.name, await self._call.details() or "")
        finally:
            if not self._call.done():
                self._call.cancel()


class GrpcExecutors:
    def __init__(self, addresses: Sequence[str], telemetry: Telemetry) -> None:
        self._addresses = tuple(addresses)
        self._channels = {addr: aio_channel(addr, telemetry) for addr in self._addresses}
        self._stubs = {addr: ex_grpc.ExecutorServiceStub(ch) for addr, ch in self._channels.items()}

    @property
    def addresses(self) -> Sequence[str]:
        return self._addresses

    def start(self, address: str, spec: RunSpec, timeout: float) -> GrpcRun:
        request = ex_pb.RunRequest(
            agent_id=spec.agent_id,
            template_name=spec.template_name,
            template_version=spec.template_version,
            input=spec.input,
        )
        return GrpcRun(self._stubs[address].Run(request, timeout=max(timeout, 0.001)))

    async def close(self) -> None:
        await asyncio.gather(*(ch.close() for ch in self._channels.values()))
