"""Real processes on loopback: signer → registry (templates published through its API) → executors →
scheduler. Signer, registry and executors are shared by a module (`workdir` and `signer` come from
tests/integration/conftest.py); each test gets its own scheduler (its own journal), started by the
`scheduler` factory."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import wasmtime

from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from agentfactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from agentfactory.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from tests.harness import REPO, ServiceProcess, free_port
from tests.integration.conftest import busy_then_done_wat

TIMEOUT = 10.0
LIMITS = {"memory_bytes": 1 << 20, "max_output_bytes": 65536, "max_tool_calls": 10}

# A tight loop with no way out: only fuel (20e9, far away), the wall clock or a cancel stops it.
SPIN_WAT = """(module (memory (export "memory") 1)
  (func (export "_start") (loop $spin (br $spin))))"""

# Busy for a few hundred ms (400M iterations), then writes "done\n": a run long enough to be killed mid-flight.
WORK_WAT = busy_then_done_wat(400_000_000)


def _template(name: str, wat: str, fuel: int, timeout_ms: int, retryable: bool) -> tuple[dict[str, object], bytes]:
    manifest = {
        "name": name,
        "version": "1.0.0",
        "description": f"scheduler integration test agent {name}",
        "limits": {**LIMITS, "fuel": fuel, "timeout_ms": timeout_ms},
        "labels": {"suite": "scheduler"},
        "retryable": retryable,
    }
    return manifest, bytes(wasmtime.wat2wasm(wat))


def templates() -> list[tuple[dict[str, object], bytes]]:
    echo_dir = REPO / "examples" / "agents" / "echo-upper"
    echo = json.loads((echo_dir / "template.json").read_text())
    # Built from the example's own source, so the suite does not depend on `make examples` having run.
    echo_wasm = bytes(wasmtime.wat2wasm((echo_dir / "echo-upper.wat").read_text()))
    return [
        (echo, echo_wasm),
        _template("sched-spin", SPIN_WAT, fuel=20_000_000_000, timeout_ms=30_000, retryable=False),
        _template("sched-burn", SPIN_WAT, fuel=5_000_000, timeout_ms=10_000, retryable=False),
        _template("sched-work-retry", WORK_WAT, fuel=10_000_000_000, timeout_ms=10_000, retryable=True),
        _template("sched-work-once", WORK_WAT, fuel=10_000_000_000, timeout_ms=10_000, retryable=False),
        _template("sched-old", SPIN_WAT, fuel=5_000_000, timeout_ms=1_000, retryable=False),
    ]


def publish(registry_addr: str, manifest: dict[str, object], module: bytes) -> None:
    def requests() -> Iterator[reg_pb.PublishTemplateRequest]:
        header = reg_pb.PublishHeader(manifest_json=json.dumps(manifest).encode(), module_size=len(module))
        yield reg_pb.PublishTemplateRequest(header=header)
        yield reg_pb.PublishTemplateRequest(chunk=module)

    with grpc.insecure_channel(registry_addr) as channel:
        reg_grpc.RegistryServiceStub(channel).PublishTemplate(requests(), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def registry(workdir: Path, signer: ServiceProcess) -> Iterator[ServiceProcess]:
    with ServiceProcess("registry", workdir, {"AF_SIGNER_ADDR": signer.addr}) as proc:
        for manifest, module in templates():
            publish(proc.addr, manifest, module)
        yield proc


def executor_env(registry: ServiceProcess, signer: ServiceProcess, **extra: str) -> dict[str, str]:
    return {"AF_REGISTRY_ADDR": registry.addr, "AF_SIGNER_ADDR": signer.addr, **extra}


@pytest.fixture(scope="module")
def executor(workdir: Path, registry: ServiceProcess, signer: ServiceProcess) -> Iterator[ServiceProcess]:
    """The executor every scheduler calls; its metrics (AF_METRICS_ADDR) say how each run ended."""
    env = executor_env(registry, signer, AF_METRICS_ADDR=f"127.0.0.1:{free_port()}")
    with ServiceProcess("executor-main", workdir, env) as proc:
        yield proc


class Scheduler:
    """A scheduler process plus a client for it."""

    def __init__(self, proc: ServiceProcess, metrics_port: int) -> None:
        self.proc = proc
        self.metrics_port = metrics_port
        self.channel = grpc.insecure_channel(proc.addr)
        self.stub = pb_grpc.SchedulerServiceStub(self.channel)

    def restart(self) -> None:
        self.channel.close()
        self.proc.start()
        self.channel = grpc.insecure_channel(self.proc.addr)
        self.stub = pb_grpc.SchedulerServiceStub(self.channel)

    def create(self, template: str, data: bytes = b"", **kw: object) -> pb.Agent:
        request = pb.CreateAgentRequest(template_name=template, input=data, **kw)  # type: ignore[arg-type]
        return self.stub.CreateAgent(request, timeout=TIMEOUT).agent

    def get(self, agent_id: str) -> pb.Agent:
        return self.stub.GetAgent(pb.GetAgentRequest(id=agent_id), timeout=TIMEOUT).agent

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include `labels` (0 when absent)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def close(self) -> None:
        self.channel.close()


SchedulerFactory = Callable[..., Scheduler]


@pytest.fixture
def scheduler(tmp_path: Path, registry: ServiceProcess, executor: ServiceProcess) -> Iterator[SchedulerFactory]:
    started: list[Scheduler] = []

    def start(executors: list[str] | None = None, **env: str) -> Scheduler:
        metrics_port = free_port()
        settings = {
            "AF_REGISTRY_ADDR": registry.addr,
            "AF_EXECUTOR_ADDRS": ",".join(executors or [executor.addr]),
            "AF_METRICS_ADDR": f"127.0.0.1:{metrics_port}",
            **env,
        }
        proc = ServiceProcess("scheduler", tmp_path, settings)
        proc.start()
        sched = Scheduler(proc, metrics_port)
        started.append(sched)
        return sched

    yield start
    for sched in started:
        sched.close()
        code = sched.proc.stop()
        assert code in (0, -9, None), f"scheduler exited with {code}:\n{sched.proc.logs()[-3000:]}"
