"""Verification failures through real processes. The registry's store is tampered with while it is stopped
(signatures swapped between two templates in its SQLite file, one byte of a module blob flipped), then two
executors start against it: `short` refreshes the public keys every 0.2 s (learns revocations), `long`
only at start-up and when a signature names a key version it does not know (both with the signer's key
push turned off: these tests are about the pull paths; test_key_push.py covers the push). The registry's policy
allows 16 MiB modules, the executors' 8 MiB: the executor's own module bound is checked too.

The tests run in file order: key rotation (test 4) and revocation (test 5) change the signer for good."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from afctl.client import Client, Endpoints
from afctl.examples import catalogue
from agentfactory.executor.v1 import executor_service_pb2 as pb
from agentfactory.signer.v1 import signer_service_pb2 as sig_pb
from tests.harness import ServiceProcess, free_port
from tests.integration.conftest import scrape_metric, start_ready
from tests.integration.executor.agents import LIMITS, manifest, say_wat, wasm
from tests.integration.executor.conftest import (
    EXECUTOR_SERVICE,
    HUGE,
    MANY_FUNCTIONS,
    Executor,
    ensure_examples_built,
    executor_env,
    finished,
    output,
    started,
    write_policy,
)

OK = grpc.StatusCode.OK
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


@dataclass
class Tampered:
    registry: ServiceProcess
    signer: ServiceProcess
    short: Executor  # keys refreshed every 0.2 s
    long: Executor  # keys refreshed at start and on an unknown version only
    long_metrics: str
    short_proc: ServiceProcess
    long_proc: ServiceProcess
    blob_digest: str

    def client(self) -> Client:
        return Client(Endpoints(self.registry.addr, self.signer.addr, self.registry.addr))


def say(name: str, text: str, version: str = "1.0.0") -> tuple[bytes, bytes]:
    return manifest(name, version, limits=LIMITS), wasm(say_wat(text))


def swap_signatures(db: Path, first: str, second: str) -> None:
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT name, signature FROM templates WHERE name IN (?, ?)", (first, second)))
        conn.execute("UPDATE templates SET signature = ? WHERE name = ?", (rows[second], first))
        conn.execute("UPDATE templates SET signature = ? WHERE name = ?", (rows[first], second))
    conn.close()


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def tampered(workdir: Path, signer: ServiceProcess) -> Iterator[Tampered]:
    ensure_examples_built()
    lenient = write_policy(workdir / "registry-policy.yaml", [], max_bytes=16 << 20, max_functions=100_000)
    strict = write_policy(workdir / "executor-policy.yaml", [])
    registry = ServiceProcess("registry", workdir, {"AF_POLICY_FILE": str(lenient), "AF_SIGNER_ADDR": signer.addr})
    with registry:
        with Client(Endpoints(registry.addr, signer.addr, registry.addr)) as client:
            for manifest_json, module in (
                say("vf-a", "from a"),
                say("vf-b", "from b"),
                say("vf-blob", "from blob"),
                say("vf-revoked", "revoked soon"),
            ):
                client.publish(manifest_json, module)
            for refused_at_publish in (HUGE, MANY_FUNCTIONS):
                hostile = next(t for t in catalogue("hostile") if t.name == refused_at_publish)
                client.publish(hostile.manifest_json(), hostile.module())
            echo = next(t for t in catalogue("agents") if t.name == "echo-upper")
            client.publish(echo.manifest_json(), echo.module())
            blob_digest = client.get_template("vf-blob", "1.0.0").manifest.module_sha256
            assert client.get_template("vf-a", "1.0.0").signature.key_version == 1
        registry.stop()
        data = workdir / "registry-data"
        swap_signatures(data / "registry.db", "vf-a", "vf-b")
        flip_byte(data / "blobs" / "sha256" / blob_digest[:2] / blob_digest)
        registry.start()
        short_proc = start_ready(
            ServiceProcess(
                "executor-short",
                workdir,
                executor_env(
                    registry, signer, strict, AF_EXECUTOR_KEYS_REFRESH_SECONDS="0.2", AF_EXECUTOR_KEYS_WATCH="0"
                ),
            ),
            EXECUTOR_SERVICE,
        )
        long_metrics = f"127.0.0.1:{free_port()}"
        long_proc = start_ready(
            ServiceProcess(
                "executor-long",
                workdir,
                executor_env(
                    registry,
                    signer,
                    strict,
                    AF_EXECUTOR_KEYS_REFRESH_SECONDS="3600",
                    AF_EXECUTOR_KEYS_WATCH="0",
                    AF_METRICS_ADDR=long_metrics,
                ),
            ),
            EXECUTOR_SERVICE,
        )
        short, long = Executor(short_proc.addr), Executor(long_proc.addr)
        try:
            yield Tampered(registry, signer, short, long, long_metrics, short_proc, long_proc, blob_digest)
        finally:
            short.close()
            long.close()
            for proc in (short_proc, long_proc):
                assert proc.alive(), proc.logs()[-3000:]
                proc.stop()


def refused(executor: Executor, name: str, version: str = "1.0.0") -> tuple[grpc.StatusCode, str]:
    events, code, details = executor.run(name, version=version)
    assert events == [], f"{name} must not run at all, got {[e.WhichOneof('event') for e in events]}"
    return code, details


def test_swapped_signatures_are_refused_before_running(tampered: Tampered) -> None:
    for name in ("vf-a", "vf-b"):
        for executor in (tampered.short, tampered.long):
            code, details = refused(executor, name)
            assert code == FAILED_PRECONDITION, details
            assert "signature does not match the manifest" in details and "v1" in details, details
    # The registry serves the tampered rows as they are; the executor is what refuses them.
    with tampered.client() as client:
        template = client.get_template("vf-a", "1.0.0")
        with pytest.raises(Exception, match="signature does not match"):
            client.verify_offline(template)
    events, code, _ = tampered.short.run("echo-upper", data=b"intact")
    assert code == OK and output(events) == b"INTACT"


def test_flipped_module_byte_is_data_loss_and_never_runs(tampered: Tampered) -> None:
    for executor, proc in ((tampered.short, tampered.short_proc), (tampered.long, tampered.long_proc)):
        code, details = refused(executor, "vf-blob")
        # The registry's FetchModule holds back the last chunk until the blob hashes to its name.
        assert code == grpc.StatusCode.DATA_LOSS, (code, details)
        assert details.startswith(f"registry FetchModule {tampered.blob_digest}: "), details
        assert "on disk no longer matches its digest" in details and "restore it from a backup" in details, details
        cached = list((proc.workdir / f"{proc.name}-data" / "modules").glob(f"{tampered.blob_digest}-*"))
        assert cached == []  # nothing of it was compiled or cached


def test_executor_enforces_its_own_module_size_bound(tampered: Tampered) -> None:
    code, details = refused(tampered.short, HUGE)
    assert code == FAILED_PRECONDITION
    assert details == "module is 9437245 bytes; the policy allows at most 8388608 (rule module.max_bytes)"


def test_executor_enforces_its_own_structural_bounds_before_compiling(tampered: Tampered) -> None:
    code, details = refused(tampered.short, MANY_FUNCTIONS)
    assert code == FAILED_PRECONDITION
    assert details == "module has 60000 functions; the policy allows at most 20000 (rule module.max_functions)"


def key_refreshes(tampered: Tampered) -> float:
    return scrape_metric(tampered.long_metrics, "agentfactory_executor_key_refreshes_total", result="ok")


def test_unknown_key_version_triggers_a_refresh(tampered: Tampered) -> None:
    assert key_refreshes(tampered) == 1  # start-up only; the periodic refresh is an hour away
    with tampered.client() as client:
        assert client.rotate_key().key.key_version == 2
        published = client.publish(*say("vf-new", "signed by v2"))
        assert published.template.signature.key_version == 2
    while True:  # the first attempts may meet the refresh rate limit (one a second), however slow the machine
        events, code, details = tampered.long.run("vf-new")
        if code == OK:
            break
        time.sleep(0.1)
    assert code == OK, details
    assert started(events).key_version == 2 and output(events) == b"signed by v2"
    assert key_refreshes(tampered) >= 2


def test_revoked_key_version_is_refused_and_a_republished_version_runs(tampered: Tampered) -> None:
    events, code, _ = tampered.short.run("vf-revoked")  # signed by v1, verified and cached before revocation
    assert code == OK and started(events).key_version == 1
    with tampered.client() as client:
        if max(k.key_version for k in client.public_keys().keys) < 2:
            client.rotate_key()  # when this test runs alone
        request = sig_pb.SetMinimumKeyVersionRequest(min_version=2)
        assert client.signer.SetMinimumKeyVersion(request, timeout=10).min_version == 2
    while True:  # the short executor's background refresh (0.2 s) learns the revocation: no time bound
        events, code, details = tampered.short.run("vf-revoked")
        if code != OK:
            break
        time.sleep(0.05)
    assert (code, events) == (FAILED_PRECONDITION, []), details
    assert "v1 is revoked (minimum version is 2)" in details, details
    with tampered.client() as client:
        client.publish(*say("vf-revoked", "revoked soon", version="1.0.1"))
    events, code, details = tampered.short.run("vf-revoked", version="1.0.1")
    assert code == OK, details
    assert started(events).key_version == 2 and finished(events).outcome == pb.RUN_OUTCOME_SUCCEEDED
    assert output(events) == b"revoked soon"
