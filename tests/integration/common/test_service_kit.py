"""The service kit on real processes: every service refuses a bad setting with one stderr line and exit
code 2 before it opens anything; a kit-only service (kit_service.py) drains and closes in the documented
order on a real SIGTERM, and stays NOT_SERVING until its `ready` says otherwise."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness import REPO, ServiceProcess, eventually, exited, wait_serving

SERVICES = ("registry", "signer", "executor", "scheduler")

# One setting each service owns, and the common ones every service reads through the kit.
OWN_BAD_SETTING = {
    "registry": {"AF_REGISTRY_CACHE_ENTRIES": "-1"},
    "signer": {"AF_SIGNER_BACKEND": "hsm"},
    "executor": {"AF_EXECUTOR_EPOCH_TICK_MS": "0"},
    "scheduler": {"AF_JOURNAL_SYNCHRONOUS": "OFF"},
}
COMMON_BAD_SETTING = {
    "log level": {"AF_LOG_LEVEL": "loud"},
    "listen address": {"AF_LISTEN_ADDR": "0.0.0.0:7101"},
    "event loop": {"AF_EVENT_LOOP": "trio"},
}


def _exit_of(module: str, env: dict[str, str], workdir: Path) -> subprocess.CompletedProcess[str]:
    proc = ServiceProcess(module.rsplit(".", 1)[-1], workdir, env)
    return subprocess.run(
        [sys.executable, "-m", module], cwd=REPO, env=proc.env, capture_output=True, text=True, timeout=120
    )


def _cases() -> list[tuple[str, dict[str, str]]]:
    cases = [(svc, OWN_BAD_SETTING[svc]) for svc in SERVICES]
    cases += [(svc, env) for svc in SERVICES for env in COMMON_BAD_SETTING.values()]
    cases += [(svc, {"AF_POLICY_FILE": "/nonexistent/policy.yaml"}) for svc in ("registry", "executor")]
    return cases


@pytest.mark.parametrize(("service", "env"), _cases(), ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_every_service_refuses_a_bad_setting_in_one_line_with_exit_code_2(
    service: str, env: dict[str, str], tmp_path: Path
) -> None:
    result = _exit_of(f"services.{service}", env, tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    # Each names what is wrong: the variable, or the policy file (a PolicyError says which file and why).
    named = "cannot read policy /nonexistent" if "AF_POLICY_FILE" in env else "AF_"
    assert result.stderr.startswith(f"{service}: configuration error: {named}"), result.stderr[-2000:]
    assert result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert result.stdout == ""
    assert not (tmp_path / f"{service}-data").exists()  # refused before opening anything


def _steps(log_text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("msg") in ("step", "draining", "stopped")]


def _health(addr: str) -> int:
    with grpc.insecure_channel(addr) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return int(reply.status)


def _answers(addr: str) -> bool:
    try:
        _health(addr)
        return True
    except grpc.RpcError:
        return False


def test_a_sigterm_drains_and_closes_in_the_documented_order(tmp_path: Path) -> None:
    proc = ServiceProcess("kit", tmp_path, {"KIT_READY_FILE": str(tmp_path / "ready")})
    with open(proc.log_path, "wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.common.kit_service"], cwd=REPO, env=proc.env, stderr=log
        )
    try:
        # No time bound on these waits (a loaded machine is slow; pytest's timeout ends a hang), but each
        # fails at once, with the log, if the process exits meanwhile.
        broken = exited(popen, proc.logs)
        eventually(lambda: _answers(proc.addr), "the health service answering", broken=broken)
        assert _health(proc.addr) == health_pb2.HealthCheckResponse.NOT_SERVING  # listening, not ready yet
        (tmp_path / "ready").touch()
        wait_serving(proc.addr, broken=broken)
        eventually(lambda: "background started" in proc.logs(), "the background task started", broken=broken)
        popen.send_signal(signal.SIGTERM)
        assert popen.wait(120) == 0, proc.logs()[-4000:]
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait(10)
    steps = _steps(proc.logs())
    names = [s.get("step", s["msg"]) for s in steps]
    assert names == [
        "ready",
        "background started",
        "draining",
        "background ended",
        "close client",
        "close store",
        "stopped",
    ], names
    close_client = next(s for s in steps if s.get("step") == "close client")
    # When the first close step runs, the server has stopped and the background task has ended.
    assert close_client["server"] == "UNAVAILABLE" and close_client["background_ended"] is True
