"""What a run reports, as domain values (the servicer turns them into RunResponse messages)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Outcome(Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    CANCELLED = "cancelled"


class LimitKind(Enum):
    NONE = "none"
    FUEL = "fuel"
    MEMORY = "memory"
    DEADLINE = "deadline"
    OUTPUT = "output"
    TOOL_CALLS = "tool_calls"
    STACK = "stack"
    SCRATCH = "scratch"


@dataclass(frozen=True)
class Accepted:
    executor_id: str


@dataclass(frozen=True)
class Started:
    module_sha256: str
    key_version: int
    cache: str


@dataclass(frozen=True)
class Output:
    data: bytes


@dataclass(frozen=True)
class Log:
    level: str
    message: str


@dataclass(frozen=True)
class ToolCalled:
    tool: str
    allowed: bool
    detail: str


@dataclass(frozen=True)
class Finished:
    outcome: Outcome
    exit_code: int = 0
    trap: str = ""
    limit: LimitKind = LimitKind.NONE
    reason: str = ""
    fuel_used: int = 0
    peak_memory_bytes: int = 0
    duration_seconds: float = 0.0
    tool_calls: int = 0
    output_bytes: int = 0


RunEvent = Accepted | Started | Output | Log | ToolCalled | Finished
