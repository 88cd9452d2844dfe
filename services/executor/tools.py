"""The agent tools moved to services/executor/sandbox/ (tools.py, abi.py, codes.py); kept for importers."""

from services.executor.sandbox.codes import (
    AF_ERR_BOUNDS,
    AF_ERR_DENIED,
    AF_ERR_INVALID,
    AF_ERR_IO,
    AF_ERR_NOT_FOUND,
    AF_ERR_TOO_LARGE,
    AF_OK,
)
from services.executor.sandbox.tools import AgentTools, ToolContext

__all__ = [
    "AF_ERR_BOUNDS",
    "AF_ERR_DENIED",
    "AF_ERR_INVALID",
    "AF_ERR_IO",
    "AF_ERR_NOT_FOUND",
    "AF_ERR_TOO_LARGE",
    "AF_OK",
    "AgentTools",
    "ToolContext",
]
