"""Signer integration fixtures: a session-wide real OpenBao dev server and real signer processes."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from agentfactory.signer.v1 import signer_service_pb2_grpc as pb_grpc
from tests.harness import REPO, ServiceProcess, free_port
from tests.harness_openbao import OpenBaoServer


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with OpenBaoServer(tmp_path_factory.mktemp("openbao")) as server:
        yield server


StartSigner = Callable[..., ServiceProcess]


@pytest.fixture
def start_signer(tmp_path: Path) -> Iterator[StartSigner]:
    """Start real signer processes (stopped at teardown); `env` overrides AF_* settings."""
    started: list[ServiceProcess] = []

    def start(env: dict[str, str], workdir: Path | None = None) -> ServiceProcess:
        proc = ServiceProcess("signer", workdir or tmp_path, {"AF_METRICS_ADDR": f"127.0.0.1:{free_port()}", **env})
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(params=["local", "vault"])
def backend_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings for each backend; every vault test gets its own transit key in the shared server."""
    if request.param == "local":
        return {"AF_SIGNER_BACKEND": "local"}
    bao: OpenBaoServer = request.getfixturevalue("openbao")
    return {"AF_SIGNER_BACKEND": "vault", "AF_SIGNER_KEY_NAME": "t-" + secrets.token_hex(6), **bao.env()}


@pytest.fixture
def signer(start_signer: StartSigner, backend_env: dict[str, str]) -> ServiceProcess:
    return start_signer(backend_env)


def stub_for(proc: ServiceProcess) -> tuple[grpc.Channel, pb_grpc.SignerServiceStub]:
    channel = grpc.insecure_channel(proc.addr)
    return channel, pb_grpc.SignerServiceStub(channel)


@pytest.fixture
def stub(signer: ServiceProcess) -> Iterator[pb_grpc.SignerServiceStub]:
    channel, client = stub_for(signer)
    yield client
    channel.close()


def run_until_exit(workdir: Path, env: dict[str, str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a signer that is expected to refuse to start; return its exit status and output."""
    proc = ServiceProcess("signer", workdir, env)
    return subprocess.run(
        [sys.executable, "-m", proc.module], cwd=REPO, env=proc.env, capture_output=True, text=True, timeout=timeout
    )
