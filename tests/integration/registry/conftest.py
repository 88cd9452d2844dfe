"""Real processes: a signer on the local key backend and a registry that signs through it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc
import pytest
import wasmtime

from agentfactory.registry.v1 import registry_service_pb2 as pb
from agentfactory.registry.v1 import registry_service_pb2_grpc
from agentfactory.signer.v1 import signer_service_pb2, signer_service_pb2_grpc
from services.templates.signature import Keyring, PublicKeyVersion
from tests.harness import ServiceProcess, free_port

TIMEOUT = 10.0
CHUNK = 1024 * 1024
WASM = bytes(wasmtime.wat2wasm('(module (func (export "_start")))'))


def padded_wasm(size: int) -> bytes:
    """A real module grown to `size` bytes by a custom section (wasmtime accepts and ignores it)."""
    body_len = size - len(WASM) - 1 - 5
    body = b"\x03pad" + b"\0" * (body_len - 4)
    leb = bytes([(len(body) >> (7 * i) & 0x7F) | (0x80 if i < 4 else 0) for i in range(5)])
    module = WASM + b"\x00" + leb + body
    assert len(module) == size
    wasmtime.Module(wasmtime.Engine(), module)  # really valid
    return module


def manifest(name: str, version: str = "1.0.0", **fields: object) -> bytes:
    return json.dumps({"name": name, "version": version, **fields}).encode()


def publish_requests(
    raw: bytes, module: bytes = WASM, module_size: int | None = None, chunk: int = CHUNK
) -> Iterator[pb.PublishTemplateRequest]:
    size = len(module) if module_size is None else module_size
    yield pb.PublishTemplateRequest(header=pb.PublishHeader(manifest_json=raw, module_size=size))
    for start in range(0, len(module), chunk):
        yield pb.PublishTemplateRequest(chunk=module[start : start + chunk])


class Client:
    def __init__(self, addr: str, signer_addr: str | None = None) -> None:
        self.channel = grpc.insecure_channel(addr)
        self.stub = registry_service_pb2_grpc.RegistryServiceStub(self.channel)
        self.signer_addr = signer_addr

    def publish(self, raw: bytes, module: bytes = WASM, **kw: object) -> pb.PublishTemplateResponse:
        return self.stub.PublishTemplate(publish_requests(raw, module, **kw), timeout=TIMEOUT)

    def publish_stream(self, requests: Iterable[pb.PublishTemplateRequest]) -> pb.PublishTemplateResponse:
        return self.stub.PublishTemplate(iter(requests), timeout=TIMEOUT)

    def get(self, name: str, version: str = "") -> pb.GetTemplateResponse:
        return self.stub.GetTemplate(pb.GetTemplateRequest(name=name, version=version), timeout=TIMEOUT)

    def fetch(self, sha256: str) -> list[pb.FetchModuleResponse]:
        return list(self.stub.FetchModule(pb.FetchModuleRequest(sha256=sha256), timeout=TIMEOUT))

    def keyring(self) -> Keyring:
        assert self.signer_addr
        with grpc.insecure_channel(self.signer_addr) as channel:
            reply = signer_service_pb2_grpc.SignerServiceStub(channel).GetPublicKeys(
                signer_service_pb2.GetPublicKeysRequest(), timeout=TIMEOUT
            )
        keys = [PublicKeyVersion(k.key_id, k.key_version, k.public_key_pem) for k in reply.keys]
        return Keyring(keys, {k.key_id: reply.min_version for k in reply.keys})

    def close(self) -> None:
        self.channel.close()


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with ServiceProcess("signer", tmp_path_factory.mktemp("signer"), {"AF_SIGNER_BACKEND": "local"}) as proc:
        yield proc


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, signer: ServiceProcess) -> Iterator[ServiceProcess]:
    """One registry shared by a module's tests (each test uses its own template names)."""
    env = {"AF_SIGNER_ADDR": signer.addr, "AF_METRICS_ADDR": f"127.0.0.1:{free_port()}"}
    with ServiceProcess("registry", tmp_path_factory.mktemp("registry"), env) as proc:
        yield proc


@pytest.fixture
def client(registry: ServiceProcess, signer: ServiceProcess) -> Iterator[Client]:
    c = Client(registry.addr, signer.addr)
    yield c
    c.close()
    assert registry.alive(), f"the registry died:\n{registry.logs()[-3000:]}"


def fresh_registry(workdir: Path, signer_addr: str, **env: str) -> ServiceProcess:
    """A registry of its own (not started), for restart, crash, tamper and backup tests."""
    return ServiceProcess("registry", workdir, {"AF_SIGNER_ADDR": signer_addr, **env})
