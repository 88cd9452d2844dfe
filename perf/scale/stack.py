"""Real processes for the scale curves: a signer (local keys), a registry, executors and a scheduler on
loopback ports of their own (tests/harness.py), and the templates the curves publish."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import wasmtime

from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from agentfactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from tests.harness import ServiceProcess, wait_serving

TIMEOUT = 30.0
LIMITS = {"fuel": 1_000_000, "memory_bytes": 1 << 20, "timeout_ms": 1000, "max_output_bytes": 65536,
          "max_tool_calls": 10}  # fmt: skip
SPIN_WAT = '(module (memory (export "memory") 1) (func (export "_start") (loop $spin (br $spin))))'


def small_module(i: int) -> bytes:
    """A distinct tiny module per i (its data segment differs, so its digest does)."""
    return bytes(
        wasmtime.wat2wasm(f'(module (memory (export "memory") 1) (func (export "_start")) (data (i32.const 0) "m{i}"))')
    )


def manifest(name: str, **limits: int) -> dict[str, object]:
    return {"name": name, "version": "1.0.0", "description": "scale curve", "limits": {**LIMITS, **limits}}


def publish(channel: grpc.Channel, body: dict[str, object], module: bytes) -> None:
    def requests() -> Iterator[reg_pb.PublishTemplateRequest]:
        header = reg_pb.PublishHeader(manifest_json=json.dumps(body).encode(), module_size=len(module))
        yield reg_pb.PublishTemplateRequest(header=header)
        yield reg_pb.PublishTemplateRequest(chunk=module)

    reg_grpc.RegistryServiceStub(channel).PublishTemplate(requests(), timeout=TIMEOUT)


def publish_many(registry_addr: str, start: int, stop: int, parallel: int = 4) -> None:
    """Templates scale-<i> for i in [start, stop), each with its own module, a few publishes at a time."""
    with grpc.insecure_channel(registry_addr) as channel, ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda i: publish(channel, manifest(f"scale-{i:05d}"), small_module(i)), range(start, stop)))


def rss_bytes(proc: ServiceProcess) -> int:
    assert proc.proc is not None
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def start_timed(proc: ServiceProcess, service: str) -> float:
    """Seconds from spawning `proc` to its own health entry SERVING."""
    began = time.perf_counter()
    proc.start(TIMEOUT)
    wait_serving(proc.addr, TIMEOUT, service=service)
    return time.perf_counter() - began
