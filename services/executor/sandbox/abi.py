"""The agentfactory tool ABI as one table: each import name, the manifest tool that grants it, its wasm
signature and the AgentTools method that serves it; result codes are in codes.py (docs/tools-abi.md).

`host_function(name)` is the one wrapper every tool import is linked through: it counts the call against
max_tool_calls, refuses a call once the run's deadline passed or it was cancelled, dispatches through the
table, reports a ToolCalled event and a metric, and never raises (see hostcall.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import wasmtime

from services.common.telemetry import span
from services.executor import metrics
from services.executor.events import LimitKind, ToolCalled
from services.executor.sandbox.codes import AF_ERR_DENIED, AF_ERR_IO, label
from services.executor.sandbox.hostcall import host_failure, stop_if_due, stop_now
from services.executor.sandbox.state import current
from services.executor.sandbox.tools import AgentTools

TOOL_MODULE = "agentfactory"

I32 = wasmtime.ValType.i32()
I64 = wasmtime.ValType.i64()

Handler = Callable[..., tuple[int, bool, str]]  # (tools, run, caller, *args) -> (code, allowed, detail)


@dataclass(frozen=True)
class ToolFunction:
    name: str  # the import name in module "agentfactory"
    tool: str  # the manifest tool that grants it
    params: tuple[wasmtime.ValType, ...]
    results: tuple[wasmtime.ValType, ...]
    handler: Handler

    def func_type(self) -> wasmtime.FuncType:
        return wasmtime.FuncType(list(self.params), list(self.results))


TOOL_FUNCTIONS: dict[str, ToolFunction] = {
    f.name: f
    for f in (
        ToolFunction("log", "log", (I32, I32, I32), (I32,), AgentTools.log),
        ToolFunction("kv_get", "kv", (I32, I32, I32, I32), (I32,), AgentTools.kv_get),
        ToolFunction("kv_put", "kv", (I32, I32, I32, I32), (I32,), AgentTools.kv_put),
        ToolFunction("clock_now_ms", "clock", (), (I64,), AgentTools.clock_now_ms),
        ToolFunction("random_fill", "random", (I32, I32), (I32,), AgentTools.random_fill),
        ToolFunction("http_get", "http_get", (I32, I32, I32, I32), (I32,), AgentTools.http_get),
    )
}


def host_function(function: ToolFunction) -> Callable[..., int]:
    """The callable linked for one tool import (called with access_caller=True)."""

    def call(caller: wasmtime.Caller, *args: int) -> int:
        run = current()
        try:
            if stop_if_due(caller, run):
                return AF_ERR_IO
            run.tool_calls += 1
            if run.tool_calls > run.spec.limits.max_tool_calls:
                run.trip(
                    LimitKind.TOOL_CALLS,
                    f"the agent made more than max_tool_calls={run.spec.limits.max_tool_calls} tool calls",
                )
                stop_now(caller, run)
                return AF_ERR_DENIED
            tools = run.spec.tool_host
            if tools is None:
                return AF_ERR_DENIED
            with span("tool_call", tool=function.name):
                result, allowed, detail = function.handler(tools, run, caller, *args)
            run.emit(ToolCalled(function.tool, allowed, detail))
            metrics.TOOL_CALLS.labels(function.tool, label(result)).inc()
            return result
        except BaseException as exc:
            return host_failure(caller, run, function.name, exc)

    return call
