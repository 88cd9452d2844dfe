"""Real processes on loopback, one set for the package's agent-running files (test_executor, test_hostile,
test_tools; test_verification tampers with a set of its own): signer (local keys), registry and executor
sharing one policy file whose http_allowlist names two loopback HTTP servers (one answers at once, one only
after every agent's deadline). The examples, the hostile agents (all but the huge module, which the
registry refuses) and the templates of agents.py are published through the registry's gRPC API before the
executor starts, so its start-up warm-up compiles them all."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml

from afctl.client import Client, Endpoints
from afctl.examples import catalogue
from agentfactory.executor.v1 import executor_service_pb2 as pb
from agentfactory.executor.v1 import executor_service_pb2_grpc as pb_grpc
from services.templates.policy import DEFAULT_POLICY_PATH
from tests.harness import REPO, ServiceProcess, eventually, free_port
from tests.integration.conftest import local_signer, scrape_metric, start_ready
from tests.integration.executor.agents import extra_templates

TIMEOUT = 10.0
EXECUTOR_SERVICE = "agentfactory.executor.v1.ExecutorService"
HUGE = "hostile-huge-module"
MANY_FUNCTIONS = "hostile-many-functions"
DEEP_NESTING = "hostile-deep-nesting"
REFUSED_AT_PUBLISH = frozenset({HUGE, MANY_FUNCTIONS, DEEP_NESTING})  # test_hostile.py checks how
SLOW_SERVER_SECONDS = 3.0  # longer than any deadline an agent that calls it has


class LoopbackHttp:
    """A threaded HTTP server on 127.0.0.1 answering every GET with 200 and `body` after `delay` s."""

    def __init__(self, body: bytes, delay: float = 0.0) -> None:
        self.hits = 0

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                time.sleep(delay)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the executor gave up on us (the slow server's purpose)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host_port = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://{self.host_port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Stack:
    workdir: Path
    signer: ServiceProcess
    registry: ServiceProcess
    executor: ServiceProcess
    metrics_addr: str
    fast: LoopbackHttp
    slow: LoopbackHttp

    def client(self) -> Client:
        """afctl's client on the registry and signer (no scheduler here)."""
        return Client(Endpoints(self.registry.addr, self.signer.addr, self.registry.addr))

    def metric(self, name: str, **labels: str) -> float:
        return scrape_metric(self.metrics_addr, name, **labels)

    def restart_executor(self) -> None:
        assert self.executor.stop() == 0, self.executor.logs()[-3000:]
        start_ready(self.executor, EXECUTOR_SERVICE)
        self.wait_warm()

    def wait_warm(self) -> None:
        """The executor is SERVING before its background warm-up has loaded the published modules; the
        tests that check where a module came from wait for the warm-up's end (no time bound: pytest's
        timeout ends a hang; a failure at once if the executor exits)."""
        warm = lambda: self.metric("agentfactory_executor_warmup_done") == 1  # noqa: E731
        eventually(warm, "the executor's warm-up done", broken=self.executor.exited)


def ensure_examples_built() -> None:
    if not (REPO / "build" / "wasm" / f"{HUGE}.wasm").exists():
        subprocess.run(["make", "-s", "examples"], cwd=REPO, check=True)


def write_policy(path: Path, http_allowlist: list[str], **module: int) -> Path:
    policy = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    policy["http_allowlist"] = http_allowlist
    policy["module"].update(module)
    path.write_text(yaml.safe_dump(policy))
    return path


def publish_all(client: Client, fast_host: str, slow_host: str) -> None:
    for kind in ("agents", "hostile"):
        for example in catalogue(kind):
            if example.name not in REFUSED_AT_PUBLISH:
                client.publish(example.manifest_json(), example.module(), files=example.files())
    for manifest_json, module in extra_templates(fast_host, slow_host):
        client.publish(manifest_json, module)


def executor_env(registry: ServiceProcess, signer: ServiceProcess, policy: Path, **extra: str) -> dict[str, str]:
    return {
        "AF_POLICY_FILE": str(policy),
        "AF_REGISTRY_ADDR": registry.addr,
        "AF_SIGNER_ADDR": signer.addr,
        **extra,
    }


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Package scope: the executor's start-up compiles every published module (the Go agent alone takes
    about 1.4 s), which is worth doing once for the three files that only run agents."""
    ensure_examples_built()
    workdir = tmp_path_factory.mktemp("executor-stack")
    fast = LoopbackHttp(b"hello from loopback\n")
    slow = LoopbackHttp(b"too late\n", delay=SLOW_SERVER_SECONDS)
    policy = write_policy(workdir / "policy.yaml", [fast.host_port, slow.host_port])
    signer = local_signer(workdir)
    registry = ServiceProcess("registry", workdir, {"AF_POLICY_FILE": str(policy), "AF_SIGNER_ADDR": signer.addr})
    try:
        with signer, registry:
            with Client(Endpoints(registry.addr, signer.addr, registry.addr)) as client:
                publish_all(client, fast.host_port, slow.host_port)
            metrics_addr = f"127.0.0.1:{free_port()}"
            env = executor_env(
                registry,
                signer,
                policy,
                # One worker and no queue: a run in flight makes the next one RESOURCE_EXHAUSTED (pool test).
                AF_EXECUTOR_MIN_WORKERS="1",
                AF_EXECUTOR_MAX_WORKERS="1",
                AF_EXECUTOR_QUEUE="0",
                AF_METRICS_ADDR=metrics_addr,
            )
            executor = start_ready(ServiceProcess("executor", workdir, env), EXECUTOR_SERVICE)
            try:
                built = Stack(workdir, signer, registry, executor, metrics_addr, fast, slow)
                built.wait_warm()
                yield built
            finally:
                code = executor.stop()
            assert code == 0, f"the executor did not stop cleanly ({code}):\n{executor.logs()[-3000:]}"
    finally:
        fast.close()
        slow.close()


SCHEDULER_SERVICE = "agentfactory.scheduler.v1.SchedulerService"


@pytest.fixture(scope="module")
def scheduler(workdir: Path, stack: Stack) -> Iterator[Client]:
    """A scheduler (its own journal, per module) placing runs on the stack's executor; afctl's client on it."""
    env = {"AF_REGISTRY_ADDR": stack.registry.addr, "AF_EXECUTOR_ADDRS": stack.executor.addr}
    proc = start_ready(ServiceProcess("scheduler", workdir, env), SCHEDULER_SERVICE)
    try:
        with Client(Endpoints(stack.registry.addr, stack.signer.addr, proc.addr)) as client:
            yield client
    finally:
        proc.stop()


class Executor:
    def __init__(self, addr: str) -> None:
        self.channel = grpc.insecure_channel(addr)
        self.stub = pb_grpc.ExecutorServiceStub(self.channel)

    def run(
        self, name: str, version: str = "1.0.0", data: bytes = b"", agent_id: str = "agent-1", timeout: float = TIMEOUT
    ) -> tuple[list[pb.RunEvent], grpc.StatusCode, str]:
        """(events, status code, details) of one Run call; events flattened out of their messages."""
        request = pb.RunRequest(agent_id=agent_id, template_name=name, template_version=version, input=data)
        call = self.stub.Run(request, timeout=timeout)
        events: list[pb.RunEvent] = []
        try:
            for response in call:
                assert response.events, "a RunResponse without events"
                events.extend(response.events)
        except grpc.RpcError as exc:
            return events, exc.code(), exc.details()
        return events, grpc.StatusCode.OK, ""

    def run_retrying(self, name: str, **kw: object) -> tuple[list[pb.RunEvent], grpc.StatusCode, str]:
        """As the mesh does: retry a refusal by a full pool (the only worker may still be finishing)."""
        for _ in range(50):
            events, code, details = self.run(name, **kw)  # type: ignore[arg-type]
            if code != grpc.StatusCode.RESOURCE_EXHAUSTED or events:
                break
            time.sleep(0.01)
        return events, code, details

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def executor(stack: Stack) -> Iterator[Executor]:
    client = Executor(stack.executor.addr)
    yield client
    client.close()
    assert stack.executor.alive(), f"the executor died:\n{stack.executor.logs()[-3000:]}"


# --- reading a run's events ------------------------------------------------------------------------


def kinds(events: list[pb.RunEvent]) -> list[str]:
    return [e.WhichOneof("event") for e in events]


def finished(events: list[pb.RunEvent]) -> pb.RunFinished:
    assert events and events[-1].WhichOneof("event") == "finished", kinds(events)
    return events[-1].finished


def output(events: list[pb.RunEvent]) -> bytes:
    return b"".join(e.output.data for e in events if e.WhichOneof("event") == "output")


def logs(events: list[pb.RunEvent]) -> list[tuple[str, str]]:
    return [(e.log.level, e.log.message) for e in events if e.WhichOneof("event") == "log"]


def tool_calls(events: list[pb.RunEvent]) -> list[pb.ToolCall]:
    return [e.tool_call for e in events if e.WhichOneof("event") == "tool_call"]


def started(events: list[pb.RunEvent]) -> pb.RunStarted:
    found = [e.started for e in events if e.WhichOneof("event") == "started"]
    assert len(found) == 1, kinds(events)
    return found[0]


def json_output(events: list[pb.RunEvent]) -> dict[str, object]:
    return json.loads(output(events))
