"""Process fixtures and helpers shared by the integration suites.

- `workdir` and `signer` (module scope): a work directory per test module and a signer on the local key
  backend in it (`local_signer` for other scopes). Suites that rotate or revoke keys get their own signer
  this way.
- `start_ready(proc, service)`: start a process and wait until *its own* health entry is SERVING. The
  harness waits on the overall "" entry, which grpc's aio HealthServicer reports SERVING from the first
  moment, before a service's readiness work (the executor's key fetch and cache warm-up) is done.
- `scrape_metric(addr, name, **labels)`: one Prometheus sample sum from a service's /metrics.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ServiceProcess


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


def local_signer(workdir: Path) -> ServiceProcess:
    """A signer on the local (embedded) key backend, not started yet (use it as a context manager)."""
    return ServiceProcess("signer", workdir, {"AF_SIGNER_BACKEND": "local"})


@pytest.fixture(scope="module")
def signer(workdir: Path) -> Iterator[ServiceProcess]:
    """A real signer on the local key backend, one per test module."""
    with local_signer(workdir) as proc:
        yield proc


def start_ready(proc: ServiceProcess, service: str) -> ServiceProcess:
    """Start `proc` and wait until the gRPC health entry of `service` (its full name) is SERVING: no time
    bound (pytest's timeout ends a hang), but at once a failure with its log if the process exits."""
    proc.start()
    proc.wait_serving(service)
    return proc


def scrape_metric(metrics_addr: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    with urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{key}="{want}"' in head for key, want in labels.items()):
            total += float(value)
    return total


def busy_then_done_wat(iterations: int) -> str:
    """A WAT agent that spins `iterations` times, then writes "done\\n": long enough to kill mid-run."""
    return f"""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "done\\n")
  (func (export "_start")
    (local $i i32)
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const {iterations}))))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 5))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""
