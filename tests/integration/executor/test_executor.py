"""Signer + registry + executor as real processes: the Run stream, bad requests, hot reload, cancellation,
pool full, capacity, parallel callers, and what survives an executor restart (disk cache, kv store).
Hostile agents: test_hostile.py; tools: test_tools.py; verification failures: test_verification.py."""

from __future__ import annotations

import json
import threading
import time

import grpc

from afctl.examples import catalogue
from agentfactory.executor.v1 import executor_service_pb2 as pb
from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from tests.integration.conftest import scrape_metric, start_ready
from tests.integration.executor.conftest import EXECUTOR_SERVICE, Executor, Stack, finished, kinds, output, started

OK = grpc.StatusCode.OK


def test_echo_upper_streams_events_and_is_served_from_the_warmed_cache(executor: Executor) -> None:
    events, code, _ = executor.run_retrying("echo-upper", data=b"hello executor")
    assert code == OK
    assert kinds(events)[:2] == ["accepted", "started"]
    assert events[1].started.cache == "memory" and events[1].started.key_version >= 1
    assert output(events) == b"HELLO EXECUTOR"
    done = finished(events)
    assert done.outcome == pb.RUN_OUTCOME_SUCCEEDED and done.fuel_used > 0 and done.output_bytes == 14


def test_bad_requests(executor: Executor) -> None:
    events, code, _ = executor.run("no-such-template")
    assert (code, events) == (grpc.StatusCode.NOT_FOUND, [])
    assert executor.run("echo-upper", version="")[1] == grpc.StatusCode.INVALID_ARGUMENT
    assert executor.run("", version="1.0.0")[1] == grpc.StatusCode.INVALID_ARGUMENT
    assert executor.run("echo-upper", data=b"x" * (1024 * 1024 + 1))[1] == grpc.StatusCode.INVALID_ARGUMENT


def test_hot_reload_precompiles_a_new_version(executor: Executor, stack: Stack) -> None:
    echo = next(t for t in catalogue("agents") if t.name == "echo-upper")
    manifest = json.loads(echo.manifest_json())
    manifest["version"] = "1.1.0"
    with stack.client() as client:
        client.publish(json.dumps(manifest).encode(), echo.module())
    # The registry's watch event reaches the executor, which compiles 1.1.0 in the background: until it
    # has, a run may compile it itself (cache "registry"). Runs until one is served from memory, however
    # long a loaded machine takes (pytest's timeout ends a hang: a version never precompiled).
    while True:
        events, code, _ = executor.run_retrying("echo-upper", version="1.1.0", data=b"new")
        assert code == OK
        if events[1].started.cache == "memory":
            break
        time.sleep(0.1)
    assert output(events) == b"NEW"


RUN_OUTCOMES = ("succeeded", "failed", "timed_out", "resource_exhausted", "cancelled")


def _runs_by_outcome(stack: Stack) -> dict[str, float]:
    return {o: scrape_metric(stack.metrics_addr, "agentfactory_executor_runs_total", outcome=o) for o in RUN_OUTCOMES}


def _next_outcome(stack: Stack, before: dict[str, float]) -> str:
    """The outcome of the next run the executor counts after `before`: what ended it, with no bound on how
    long the machine takes (a run nothing ends is left to pytest's timeout)."""
    while True:
        now = _runs_by_outcome(stack)
        ended = [o for o in RUN_OUTCOMES if now[o] > before[o]]
        if ended:
            return ",".join(ended)
        time.sleep(0.01)


def _until_idle(executor: Executor) -> None:
    while executor.stub.GetCapacity(pb.GetCapacityRequest(), timeout=5).busy:
        time.sleep(0.01)


def test_pool_full_is_resource_exhausted_and_cancel_frees_the_worker(executor: Executor, stack: Stack) -> None:
    request = pb.RunRequest(agent_id="a", template_name="hostile-loop-start", template_version="1.0.0")
    call = executor.stub.Run(request, timeout=10)
    first = next(call)  # accepted: the only worker is now busy
    assert first.events[0].WhichOneof("event") == "accepted"
    events, code, details = executor.run("echo-upper", data=b"x")
    assert (code, events) == (grpc.StatusCode.RESOURCE_EXHAUSTED, []), details
    assert "retry on another executor" in details
    before = _runs_by_outcome(stack)
    call.cancel()
    assert _next_outcome(stack, before) == "cancelled", "the cancel did not stop the sandbox"
    _until_idle(executor)
    assert executor.run_retrying("echo-upper", data=b"y")[1] == OK


def test_cancel_ends_a_run_blocked_in_a_wasi_sleep(executor: Executor, stack: Stack) -> None:
    """The guest sleeps an hour inside poll_oneoff (deadline 30 s): only the cancel can free the worker
    before the deadline, and it must, although epochs never reach a guest inside a host call."""
    request = pb.RunRequest(agent_id="a", template_name="sleep-hour", template_version="1.0.0")
    call = executor.stub.Run(request, timeout=60)
    kinds_seen = [e.WhichOneof("event") for e in next(call).events]
    while "started" not in kinds_seen:
        kinds_seen += [e.WhichOneof("event") for e in next(call).events]
    before = _runs_by_outcome(stack)
    call.cancel()
    # The deadline (30 s) would end it as timed_out: cancelled means the cancel reached poll_oneoff.
    assert _next_outcome(stack, before) == "cancelled", "the cancel did not reach the run waiting in poll_oneoff"
    _until_idle(executor)
    assert executor.run_retrying("echo-upper", data=b"y")[1] == OK


def test_get_capacity(executor: Executor) -> None:
    cap = executor.stub.GetCapacity(pb.GetCapacityRequest(), timeout=5)
    assert cap.max_workers == 1 and cap.executor_id == "executor"


def test_parallel_callers(executor: Executor) -> None:
    codes: list[grpc.StatusCode] = []

    def one() -> None:
        codes.append(executor.run_retrying("echo-upper", data=b"z")[1])

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(codes) <= {OK, grpc.StatusCode.RESOURCE_EXHAUSTED} and OK in codes


# --- what survives a restart (last in this file: it restarts the module's executor) ----------------


def _run_ok(addr: str, name: str, data: bytes = b"", agent_id: str = "agent-restart") -> list[pb.RunEvent]:
    client = Executor(addr)
    try:
        events, code, details = client.run_retrying(name, data=data, agent_id=agent_id)
    finally:
        client.close()
    assert code == OK, details
    assert finished(events).outcome == pb.RUN_OUTCOME_SUCCEEDED
    return events


def _kv_count(addr: str) -> int:
    return json.loads(output(_run_ok(addr, "kv-counter", b'{"key": "restarts"}')))["count"]


def _cache_level(addr: str, name: str) -> str:
    return started(_run_ok(addr, name)).cache


def test_restart_serves_compiled_modules_from_disk_and_keeps_kv_state(stack: Stack) -> None:
    addr = stack.executor.addr
    count_before = _kv_count(addr)
    assert _cache_level(addr, "cache-probe") == "memory"  # compiled by the start-up warm-up
    with stack.client() as client:
        request = reg_pb.DeprecateTemplateRequest(name="cache-probe", version="1.0.0", reason="cache test")
        client.registry.DeprecateTemplate(request, timeout=10)
    # Hot reload: the deprecation event drops the module from memory; the serialized copy on disk stays.
    # (The event arrives in the background: however long a loaded machine takes, pytest's timeout ends a hang.)
    while _cache_level(addr, "cache-probe") != "disk":
        time.sleep(0.05)

    stack.restart_executor()
    # Deprecated versions are not warmed at start-up, so its first run after the restart shows the level.
    assert _cache_level(addr, "cache-probe") == "disk"
    assert _cache_level(addr, "cache-probe") == "memory"
    # Everything the warm-up loaded came from disk: nothing was compiled again.
    assert stack.metric("agentfactory_executor_compile_seconds_count") == 0
    assert stack.metric("agentfactory_executor_module_cache_total", level="disk", result="hit") >= 10
    assert stack.metric("agentfactory_executor_module_cache_total", level="registry") == 0
    assert _cache_level(addr, "echo-upper") == "memory"
    assert _kv_count(addr) == count_before + 1  # the kv store is on disk too

    # A damaged artifact (it is native code) is discarded and the module compiled again from the registry.
    digest = started(_run_ok(addr, "cache-probe")).module_sha256
    assert stack.executor.stop() == 0
    [artifact] = (stack.workdir / "executor-data" / "modules").glob(f"{digest}-*.cwasm")
    damaged = bytearray(artifact.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    artifact.write_bytes(bytes(damaged))
    start_ready(stack.executor, EXECUTOR_SERVICE)
    assert _cache_level(addr, "cache-probe") == "registry"
    assert f"dropping unusable compiled module {artifact.name}: checksum mismatch" in stack.executor.logs()
    assert artifact.read_bytes() != bytes(damaged)  # rewritten by the recompile
