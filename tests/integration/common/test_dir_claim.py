"""One process per data directory, for every service with an embedded store: a second registry, signer,
scheduler or executor started on a directory a live one uses exits 1 with one line naming the holder's
pid, before it touches anything; once the holder is killed (kill -9: no clean-up), a new one starts.
Without the claim nothing stopped it: a second scheduler on one SQLite journal takes over every
unfinished agent at start (the first one's RUNNING ones too), and a second executor's start-up sweep
empties the run root under the first one's live runs."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO, ServiceProcess, eventually, exited

SERVICES = ("registry", "signer", "scheduler", "executor")


def _start(service: str, workdir: Path, data: Path) -> tuple[subprocess.Popen[bytes], ServiceProcess]:
    proc = ServiceProcess(service, workdir, {"AF_DATA_DIR": str(data)})
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(proc.log_path, "ab")  # noqa: SIM115 — the process owns it until it ends
    popen = subprocess.Popen([sys.executable, "-m", proc.module], cwd=REPO, env=proc.env, stdout=log, stderr=log)
    return popen, proc


def _until_claimed(data: Path, popen: subprocess.Popen[bytes], proc: ServiceProcess) -> None:
    """Until the lock file names `popen`; fails at once, with its log, if it exits first."""
    lock = data / ".lock"
    eventually(
        lambda: lock.exists() and lock.read_text().strip() == str(popen.pid),
        f"{proc.name} to claim {data}",
        broken=exited(popen, proc.logs),
    )


@pytest.mark.parametrize("service", SERVICES)
def test_a_second_process_on_a_used_data_dir_is_refused_until_the_first_dies(service: str, tmp_path: Path) -> None:
    data = tmp_path / "shared-data"
    first, first_proc = _start(service, tmp_path / "first", data)
    try:
        _until_claimed(data, first, first_proc)
        second = ServiceProcess(service, tmp_path / "second", {"AF_DATA_DIR": str(data)})
        refused = subprocess.run(
            [sys.executable, "-m", second.module], cwd=REPO, env=second.env, capture_output=True, text=True, timeout=120
        )
        assert refused.returncode == 1, refused.stderr[-2000:]
        # The log line (JSON, for the log pipeline), then the one line for a person.
        assert refused.stderr.splitlines()[-1] == (
            f"{service}: cannot start: process {first.pid} is using {data}; "
            f"each {service} process needs a data directory of its own (AF_DATA_DIR)"
        ), refused.stderr[-2000:]
        assert first.poll() is None  # the holder goes on

        first.send_signal(signal.SIGKILL)
        first.wait(60)
        after, after_proc = _start(service, tmp_path / "after", data)
        try:
            _until_claimed(data, after, after_proc)  # the kernel dropped the dead holder's lock
        finally:
            after.kill()
            after.wait(60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(60)
