"""Real processes on loopback: signer (local keys), registry and executor sharing one policy file whose
http_allowlist names the examples' HTTP host; the examples are published through the registry's gRPC API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from afctl.examples import catalogue
from agentfactory.executor.v1 import executor_service_pb2 as pb
from agentfactory.executor.v1 import executor_service_pb2_grpc as pb_grpc
from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from agentfactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from services.spec.policy import DEFAULT_POLICY_PATH
from tests.harness import REPO, ServiceProcess, free_port

TIMEOUT = 10.0
HTTP_HOST = "127.0.0.1:18080"  # the host:port the example templates are signed with


def publish(
    stub: reg_grpc.RegistryServiceStub, manifest_json: bytes, module: bytes | None
) -> reg_pb.PublishTemplateResponse:
    def requests() -> Iterator[reg_pb.PublishTemplateRequest]:
        yield reg_pb.PublishTemplateRequest(
            header=reg_pb.PublishHeader(manifest_json=manifest_json, module_size=len(module or b""))
        )
        for start in range(0, len(module or b""), 1 << 20):
            yield reg_pb.PublishTemplateRequest(chunk=module[start : start + (1 << 20)])  # type: ignore[index]

    return stub.PublishTemplate(requests(), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceProcess]]:
    if not (REPO / "build" / "wasm" / "echo-upper.wasm").exists():
        import subprocess

        subprocess.run(["make", "-s", "examples"], cwd=REPO, check=True)
    work = tmp_path_factory.mktemp("executor-stack")
    policy = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    policy["http_allowlist"] = [HTTP_HOST]
    policy_path = work / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy))
    common = {"AF_POLICY_FILE": str(policy_path)}
    signer = ServiceProcess("signer", work, {"AF_SIGNER_BACKEND": "local"})
    with signer, ServiceProcess("registry", work, {**common, "AF_SIGNER_ADDR": signer.addr}) as registry:
        with grpc.insecure_channel(registry.addr) as channel:
            stub = reg_grpc.RegistryServiceStub(channel)
            for kind in ("agents", "hostile"):
                for example in catalogue(kind):
                    try:
                        publish(stub, example.manifest_json(), example.module())
                    except grpc.RpcError as exc:  # e.g. the huge module: refused by the registry itself
                        assert exc.code() in (
                            grpc.StatusCode.INVALID_ARGUMENT,
                            grpc.StatusCode.FAILED_PRECONDITION,
                            grpc.StatusCode.PERMISSION_DENIED,
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                        )
        env = {
            **common,
            "AF_REGISTRY_ADDR": registry.addr,
            "AF_SIGNER_ADDR": signer.addr,
            "AF_EXECUTOR_MIN_WORKERS": "1",
            "AF_EXECUTOR_MAX_WORKERS": "1",
            "AF_EXECUTOR_QUEUE": "0",
            "AF_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        }
        with ServiceProcess("executor", work, env) as executor:
            yield {"signer": signer, "registry": registry, "executor": executor}


class Executor:
    def __init__(self, addr: str) -> None:
        self.channel = grpc.insecure_channel(addr)
        self.stub = pb_grpc.ExecutorServiceStub(self.channel)

    def run(
        self, name: str, version: str = "1.0.0", data: bytes = b"", agent_id: str = "agent-1", timeout: float = TIMEOUT
    ):  # type: ignore[no-untyped-def]
        """(events, status code, details) of one Run call."""
        request = pb.RunRequest(agent_id=agent_id, template_name=name, template_version=version, input=data)
        call = self.stub.Run(request, timeout=timeout)
        events: list[pb.RunResponse] = []
        try:
            for event in call:
                events.append(event)
        except grpc.RpcError as exc:
            return events, exc.code(), exc.details()
        return events, grpc.StatusCode.OK, ""

    def run_retrying(self, name: str, **kw: object):  # type: ignore[no-untyped-def]
        """As the mesh does: retry a refusal by a full pool (the only worker may still be finishing)."""
        for _ in range(50):
            events, code, details = self.run(name, **kw)  # type: ignore[arg-type]
            if code != grpc.StatusCode.RESOURCE_EXHAUSTED or events:
                break
            time.sleep(0.01)
        return events, code, details


@pytest.fixture
def executor(stack: dict[str, ServiceProcess]) -> Iterator[Executor]:
    client = Executor(stack["executor"].addr)
    yield client
    client.channel.close()
    assert stack["executor"].alive(), f"the executor died:\n{stack['executor'].logs()[-3000:]}"


@pytest.fixture
def registry_stub(stack: dict[str, ServiceProcess]) -> Iterator[reg_grpc.RegistryServiceStub]:
    with grpc.insecure_channel(stack["registry"].addr) as channel:
        yield reg_grpc.RegistryServiceStub(channel)


def workdir_of(stack: dict[str, ServiceProcess]) -> Path:
    return stack["executor"].workdir
