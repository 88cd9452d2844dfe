"""One-line errors and the exit codes afctl promises (README "afctl exit codes").

A person reading a failure wants what went wrong and what to do, not a traceback; a script wants
a code it can branch on. Every failure afctl expects maps to one line on stderr and one code.
"""

from __future__ import annotations

import enum

import grpc


class Exit(enum.IntEnum):
    OK = 0
    SERVER_ERROR = 1  # the platform answered with an error status (NOT_FOUND, PERMISSION_DENIED, ...)
    USAGE = 2  # a bad flag or value (click's own code for usage errors); also `templates verify` failing
    AGENT_FAILED = 3  # `afctl run`: the agent ran and did not succeed
    LOCAL_FILE = 4  # a file afctl was told to read is missing or unreadable
    UNREACHABLE = 5  # nothing answers at the address (wrong --gateway, mesh down)
    TLS = 6  # TLS failed: wrong CA, certificate or key, or a certificate the gateway refuses


# Longest piece of a server's or gRPC's message echoed back: enough to act on, never a wall of text.
MAX_DETAIL = 160

_TLS_MARKERS = ("ssl", "tls", "handshake", "certificate", "x509", "tsi_")


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 1] + "…"


def classify_rpc_error(exc: grpc.RpcError, target: str) -> tuple[Exit, str]:
    """The exit code and one-line message for a failed call to ``target``."""
    code: grpc.StatusCode = exc.code()
    details: str = exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        lowered = details.lower()
        if any(marker in lowered for marker in _TLS_MARKERS):
            return Exit.TLS, f"TLS with {target} failed (check --ca, --cert and --key): {_short(details)}"
        if "failed to connect" in lowered or "connection refused" in lowered or "dns" in lowered:
            return Exit.UNREACHABLE, f"cannot reach {target} (is the mesh up? check --gateway): {_short(details)}"
    return Exit.SERVER_ERROR, f"{code.name}: {_short(details)}"


def file_error(exc: OSError) -> tuple[Exit, str]:
    what = exc.strerror or type(exc).__name__
    return Exit.LOCAL_FILE, f"cannot read {exc.filename}: {what}" if exc.filename else f"cannot read a file: {what}"
