"""afctl's failure classification: which exit code and one line a failed call becomes (afctl/failures.py)."""

from __future__ import annotations

import grpc
import pytest

from afctl.failures import MAX_DETAIL, Exit, classify_rpc_error, file_error


class FakeRpcError(grpc.RpcError):
    """What grpc raises, reduced to the two accessors afctl reads."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "details", "exit_code", "starts"),
    [
        (grpc.StatusCode.NOT_FOUND, "template x is not published", Exit.SERVER_ERROR, "NOT_FOUND: template x"),
        (grpc.StatusCode.PERMISSION_DENIED, "RBAC: access denied", Exit.SERVER_ERROR, "PERMISSION_DENIED: RBAC"),
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: Connection refused",
            Exit.UNREACHABLE,
            "cannot reach gw:1",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: UNKNOWN: Tls handshake failed (TSI_PROTOCOL_FAILURE)",
            Exit.TLS,
            "TLS with gw:1 failed",
        ),
        # A service saying it is unavailable (overloaded, draining) is the platform's answer, not the network's.
        (grpc.StatusCode.UNAVAILABLE, "executor pool full", Exit.SERVER_ERROR, "UNAVAILABLE: executor pool full"),
    ],
)
def test_rpc_errors(code: grpc.StatusCode, details: str, exit_code: Exit, starts: str) -> None:
    got, line = classify_rpc_error(FakeRpcError(code, details), "gw:1")
    assert got == exit_code and line.startswith(starts), line


def test_long_details_are_one_short_line() -> None:
    _, line = classify_rpc_error(FakeRpcError(grpc.StatusCode.INTERNAL, "boom\n" * 10_000), "gw:1")
    assert "\n" not in line and len(line) < MAX_DETAIL + 40


def test_file_errors_name_the_file() -> None:
    code, line = file_error(FileNotFoundError(2, "No such file or directory", "/x/ca.pem"))
    assert code == Exit.LOCAL_FILE and line == "cannot read /x/ca.pem: No such file or directory"
