"""The agentfactory tools' result codes (docs/tools-abi.md): negative i32 values are errors."""

from __future__ import annotations

AF_OK = 0
AF_ERR_NOT_FOUND = -1
AF_ERR_DENIED = -2
AF_ERR_BOUNDS = -3
AF_ERR_TOO_LARGE = -4
AF_ERR_IO = -5
AF_ERR_INVALID = -6

# code -> the `result` label of agentfactory_executor_tool_calls_total
LABELS: dict[int, str] = {
    AF_ERR_NOT_FOUND: "not_found",
    AF_ERR_DENIED: "denied",
    AF_ERR_BOUNDS: "bounds",
    AF_ERR_TOO_LARGE: "too_large",
    AF_ERR_IO: "io",
    AF_ERR_INVALID: "invalid",
}


def label(code: int) -> str:
    return LABELS.get(code, "ok") if code < 0 else "ok"
