"""Revocation pushed to executors, and the way back (issue 10, items 9 and 10), through real processes: a
signer (local keys), a registry and two executors whose periodic key refresh is an hour away, so only the
signer's WatchPublicKeys can tell them of a revocation. Measured: seconds from SetMinimumKeyVersion to
each executor refusing a template it had verified and cached, and from ResignTemplates to each running it
again (printed; run with -s to see them). The README bounds the first at about a second. A scheduler on
the same registry refuses to create agents from a template signed by a revoked version."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from afctl.client import Client, Endpoints
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from agentfactory.signer.v1 import signer_service_pb2 as sig_pb
from services.registry import backup
from tests.harness import ServiceProcess, free_port
from tests.integration.conftest import scrape_metric, start_ready
from tests.integration.executor.agents import LIMITS, manifest, say_wat, wasm
from tests.integration.executor.conftest import (
    EXECUTOR_SERVICE,
    SCHEDULER_SERVICE,
    Executor,
    executor_env,
    output,
    started,
    write_policy,
)

OK = grpc.StatusCode.OK
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
# The executors' periodic key refresh is an hour away, and no test here waits on a clock for it: each
# waits, without a time bound, until every executor got there, then shows by the executors' own counters
# that a push (agentfactory_executor_key_pushes_total) did it and no refresh of the key set
# (agentfactory_executor_key_refreshes_total stays at its start-up 1). pytest's timeout ends a hang.


def say(name: str, text: str) -> tuple[bytes, bytes]:
    return manifest(name, "1.0.0", limits=LIMITS), wasm(say_wat(text))


@dataclass
class Stack:
    signer: ServiceProcess
    registry: ServiceProcess
    executors: list[Executor]
    scheduler: ServiceProcess
    metrics: list[str]  # each executor's metrics address

    def refreshes(self) -> list[float]:
        """Each executor's successful key-set refreshes (start-up, periodic or on demand): never pushes."""
        return [scrape_metric(m, "agentfactory_executor_key_refreshes_total", result="ok") for m in self.metrics]

    def pushes(self) -> list[float]:
        return [scrape_metric(m, "agentfactory_executor_key_pushes_total") for m in self.metrics]

    def client(self) -> Client:
        return Client(Endpoints(self.registry.addr, self.signer.addr, self.scheduler.addr))


@pytest.fixture(scope="module")
def stack(workdir: Path, signer: ServiceProcess) -> Iterator[Stack]:
    policy = write_policy(workdir / "policy.yaml", [])
    registry = ServiceProcess("registry", workdir, {"AF_POLICY_FILE": str(policy), "AF_SIGNER_ADDR": signer.addr})
    with registry:
        with Client(Endpoints(registry.addr, signer.addr, registry.addr)) as client:
            for name in ("kp-a", "kp-b", "kp-c"):
                client.publish(*say(name, f"from {name}"))
            client.rotate_key()  # v2 exists; kp-* stay signed by v1
        metrics = [f"127.0.0.1:{free_port()}" for _ in (1, 2)]
        procs = [
            start_ready(
                ServiceProcess(
                    f"executor-{i}",
                    workdir,
                    executor_env(registry, signer, policy, AF_EXECUTOR_KEYS_REFRESH_SECONDS="3600", AF_METRICS_ADDR=m),
                ),
                EXECUTOR_SERVICE,
            )
            for i, m in zip((1, 2), metrics, strict=True)
        ]
        executors = [Executor(p.addr) for p in procs]
        env = {"AF_REGISTRY_ADDR": registry.addr, "AF_EXECUTOR_ADDRS": procs[0].addr}
        scheduler = start_ready(ServiceProcess("scheduler", workdir, env), SCHEDULER_SERVICE)
        try:
            yield Stack(signer, registry, executors, scheduler, metrics)
        finally:
            scheduler.stop()
            for executor in executors:
                executor.close()
            for proc in procs:
                assert proc.alive(), proc.logs()[-3000:]
                proc.stop()


def until(executor: Executor, name: str, wanted: grpc.StatusCode, began: float, out: dict[int, float], i: int) -> None:
    """Until a run of `name` ends `wanted` (no time bound; see above), recording after how long."""
    while True:
        _, code, _ = executor.run(name)
        if code == wanted:
            out[i] = time.monotonic() - began
            return
        time.sleep(0.02)


def on_every_executor(stack: Stack, name: str, wanted: grpc.StatusCode, began: float) -> list[float]:
    seconds: dict[int, float] = {}
    # Daemon threads: if pytest's timeout ends a hung wait, they must not keep the run alive.
    threads = [
        threading.Thread(target=until, args=(e, name, wanted, began, seconds, i), daemon=True)
        for i, e in enumerate(stack.executors)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seconds) == list(range(len(stack.executors))), f"not every executor got there: {seconds}"
    return [round(seconds[i], 3) for i in range(len(stack.executors))]


def test_revocation_reaches_every_executor_by_push_then_resign_brings_templates_back(stack: Stack) -> None:
    for executor in stack.executors:  # verified and cached under v1
        events, code, details = executor.run("kp-a")
        assert code == OK and started(events).key_version == 1, details
    with stack.client() as client:
        refreshes, pushes = stack.refreshes(), stack.pushes()
        assert refreshes == [1, 1], refreshes  # start-up only
        began = time.monotonic()
        assert client.signer.SetMinimumKeyVersion(sig_pb.SetMinimumKeyVersionRequest(min_version=2), timeout=10)
        refused = on_every_executor(stack, "kp-a", FAILED_PRECONDITION, began)
        print(f"\nrevocation -> refused on each executor after {refused} s")
        # What told them: a push each, and no refresh of the key set (periodic or on demand).
        assert stack.refreshes() == refreshes, stack.refreshes()
        assert all(after > before for after, before in zip(stack.pushes(), pushes, strict=True)), stack.pushes()
        _, code, details = stack.executors[0].run("kp-a")
        assert code == FAILED_PRECONDITION and "v1 is revoked (minimum version is 2)" in details, details
        # The registry heard it too (the same push): reads mark the template, the scheduler refuses it.
        # (The registry has no periodic key refresh: only the push can tell it. No time bound.)
        create = sch_pb.CreateAgentRequest(template_name="kp-c", template_version="1.0.0")
        while True:
            try:
                client.scheduler.CreateAgent(create, timeout=10)
                code, details = OK, ""
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details()
            if code != OK:
                break
            time.sleep(0.05)
        assert code == FAILED_PRECONDITION, details
        assert details.startswith("template kp-c@1.0.0 is signed by key templates v1, which is revoked"), details
        assert client.get_template("kp-c", "1.0.0").signature_revoked

        # One template by name: re-signed by v2, announced on the registry's watch, run again everywhere.
        began = time.monotonic()
        reply = client.resign("kp-a", "1.0.0")
        assert [t.signature.key_version for t in reply.templates] == [2] and reply.unchanged == 0
        back = on_every_executor(stack, "kp-a", OK, began)
        print(f"resign -> running again on each executor after {back} s")
        events, code, _ = stack.executors[1].run("kp-a")
        assert code == OK and started(events).key_version == 2 and output(events) == b"from kp-a"

        # An identical re-publish re-signs in place (created=false, a live signature).
        again = client.publish(*say("kp-b", "from kp-b"))
        assert not again.created and again.template.signature.key_version == 2
        # Every template still signed by a revoked version, in one call; a second call has nothing to do.
        everything = client.resign(all_revoked=True)
        assert [t.manifest.name for t in everything.templates] == ["kp-c"] and everything.unchanged == 2
        assert not client.resign(all_revoked=True).templates
        on_every_executor(stack, "kp-c", OK, time.monotonic())
        for name in ("kp-a", "kp-b", "kp-c"):
            assert client.verify_offline(client.get_template(name, "1.0.0")) == 2
            assert not client.get_template(name, "1.0.0").signature_revoked
        agent = client.scheduler.CreateAgent(create, timeout=10).agent
        assert agent.id


def test_a_backup_of_the_live_registry_carries_the_key_set_and_verifies_alone(stack: Stack, workdir: Path) -> None:
    # After the test above: v1 revoked, v2 live; the registry recorded both from the signer's push.
    data_dir = stack.registry.workdir / f"{stack.registry.name}-data"
    summary = backup.create_backup(data_dir, workdir / "archive")
    keys = json.loads((workdir / "archive" / backup.KEYS).read_text())["keys"]
    assert [(k["key_version"], k["revoked"]) for k in keys] == [(1, True), (2, False)], keys
    assert summary["templates"] == 3 and summary["signed_by_revoked_keys"] == [] and summary["unverified"] == []
    assert backup.verify_backup(workdir / "archive")["unverified"] == []
