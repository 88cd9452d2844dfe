"""Start-up never waits on key versions the signer no longer serves (issue 10 item 11: 203 such templates
once took 207 s). Templates are published under one signer; the executor starts against another signer
(a switched backend: none of their key versions exist there). It reports SERVING, warms up in the
background, and asks the signer about the missing version once per key set, not once per template
(each ask used to wait out the one-a-second refresh limit). The other signer's own v1 is another key: a
template signed by the first signer's v1 is refused as signed by a replaced key (its recorded fingerprint)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from afctl.client import Client, Endpoints
from tests.harness import ServiceProcess, eventually, free_port
from tests.integration.conftest import local_signer, scrape_metric, start_ready
from tests.integration.executor.agents import LIMITS, manifest, say_wat, wasm
from tests.integration.executor.conftest import EXECUTOR_SERVICE, Executor, executor_env, write_policy

TEMPLATES = 40


def test_templates_signed_by_a_lost_key_do_not_hold_up_start_up(workdir: Path, signer: ServiceProcess) -> None:
    policy = write_policy(workdir / "policy.yaml", [])
    registry = ServiceProcess("registry", workdir, {"AF_POLICY_FILE": str(policy), "AF_SIGNER_ADDR": signer.addr})
    other = local_signer(workdir / "other")  # its own key store: the versions above mean nothing to it
    with registry, other:
        with Client(Endpoints(registry.addr, signer.addr, registry.addr)) as client:
            client.publish(manifest("lost-v1", "1.0.0", limits=LIMITS), wasm(say_wat("v1")))
            client.rotate_key()  # the rest are signed by v2, which the other signer never had
            for i in range(TEMPLATES):
                client.publish(manifest(f"lost-{i}", "1.0.0", limits=LIMITS), wasm(say_wat(f"lost {i}")))
        metrics = f"127.0.0.1:{free_port()}"
        env = executor_env(registry, other, policy, AF_METRICS_ADDR=metrics, AF_EXECUTOR_KEYS_REFRESH_SECONDS="3600")
        began = time.monotonic()
        proc = start_ready(ServiceProcess("executor", workdir, env), EXECUTOR_SERVICE)
        serving = time.monotonic() - began
        try:
            # No time bound: what shows start-up was not held up is the count of key fetches below.
            warm = lambda: scrape_metric(metrics, "agentfactory_executor_warmup_done") == 1  # noqa: E731
            eventually(warm, "the executor's warm-up done", broken=proc.exited, interval=0.1)
            warmed = time.monotonic() - began
            refreshes = scrape_metric(metrics, "agentfactory_executor_key_refreshes_total", result="ok")
            print(
                f"\n{TEMPLATES} templates signed by a lost key: SERVING after {serving:.2f} s, "
                f"warm-up done after {warmed:.2f} s, {refreshes:.0f} key fetches"
            )
            # Start-up's fetch, plus at most one ask about the missing version (not one per template).
            assert refreshes <= 2, refreshes
            executor = Executor(proc.addr)
            try:
                _, code, details = executor.run("lost-0")
                assert code == grpc.StatusCode.FAILED_PRECONDITION, details
                assert "no public key templates v2 is known" in details, details
                _, code, details = executor.run("lost-v1")
                assert code == grpc.StatusCode.FAILED_PRECONDITION and "the key was replaced" in details, details
            finally:
                executor.close()
        finally:
            proc.stop()
