"""The `afctl` console script (pyproject.toml [project.scripts])."""

from __future__ import annotations

import os


def main() -> None:
    # gRPC's C core logs a failed TLS handshake to stderr itself, once grpc is imported; afctl says it
    # in one line (afctl.failures). Set before the import, and only for this command's process.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from afctl.__main__ import main as run

    run()
