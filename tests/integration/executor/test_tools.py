"""Every agent tool through real signer, registry and executor processes: log, kv (per agent id, also
across runs and through the scheduler), clock, random, http_get (allowed, and denied at call time),
scratch (WASI files at / and /scratch; the fs-conformance agents) and the max_tool_calls cap."""

from __future__ import annotations

import json
import struct
import time

import grpc

from afctl.client import Client
from agentfactory.executor.v1 import executor_service_pb2 as pb
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from tests.integration.executor.conftest import (
    Executor,
    Stack,
    finished,
    json_output,
    logs,
    output,
    tool_calls,
)

OK = grpc.StatusCode.OK


def ok_run(executor: Executor, name: str, data: bytes = b"", agent_id: str = "agent-tools") -> list[pb.RunEvent]:
    events, code, details = executor.run_retrying(name, data=data, agent_id=agent_id)
    assert code == OK, details
    done = finished(events)
    assert done.outcome == pb.RUN_OUTCOME_SUCCEEDED, done
    return events


def test_log_tool_and_stderr_become_log_lines(executor: Executor) -> None:
    events = ok_run(executor, "text-stats", b'{"text": "The cat sat.\\nThe dog sat too."}')
    assert json_output(events) == {"words": 7, "lines": 2, "chars": 29, "top_word": "the"}
    assert logs(events) == [("info", 'text-stats: 7 words, 2 lines, 29 chars; top word "the" (2 times)')]
    [call] = tool_calls(events)
    assert (call.tool, call.allowed, call.detail) == ("log", True, "log info")


def test_clock_random_and_log_levels(executor: Executor) -> None:
    before = time.time() * 1000
    first = ok_run(executor, "tools-probe")
    after = time.time() * 1000
    log_info, log_warn, random_ok, random_too_big, now_ms, noise = struct.unpack("<iiiiq32s", output(first))
    assert (log_info, log_warn, random_ok, random_too_big) == (0, 0, 0, -4)  # -4: over the 64 KiB cap
    assert before - 1000 <= now_ms <= after + 1000
    assert logs(first) == [("info", "tools-probe: hello"), ("warn", "tools-probe: careful")]
    assert [(c.tool, c.allowed) for c in tool_calls(first)] == [
        ("log", True),
        ("log", True),
        ("random", True),
        ("random", True),
        ("clock", True),
    ]
    assert finished(first).tool_calls == 5
    second_noise = struct.unpack("<iiiiq32s", output(ok_run(executor, "tools-probe")))[5]
    assert noise != second_noise and noise != bytes(32)  # 32 CSPRNG bytes never repeat


def count(executor: Executor, agent_id: str, key: str = "visits", template: str = "kv-counter") -> int:
    events = ok_run(executor, template, json.dumps({"key": key}).encode(), agent_id=agent_id)
    result = json_output(events)
    assert result["key"] == key
    assert abs(int(result["now_ms"]) - time.time() * 1000) < 5000  # the clock tool
    assert [c.tool for c in tool_calls(events)] == ["clock", "kv", "kv", "log"]
    assert finished(events).tool_calls == 4
    return int(result["count"])


def test_kv_state_persists_per_agent_id(executor: Executor) -> None:
    assert [count(executor, "agent-kv-a") for _ in range(3)] == [1, 2, 3]
    assert count(executor, "agent-kv-b") == 1  # another agent id: its own store
    assert count(executor, "agent-kv-a", key="other") == 1  # another key of the same agent
    # A child template run under the same agent id sees the same store: the store is per agent, not per template.
    assert count(executor, "agent-kv-a", template="kv-counter-web") == 4


def test_kv_without_agent_id_is_denied(executor: Executor) -> None:
    events, code, _ = executor.run_retrying("kv-counter", data=b'{"key": "visits"}', agent_id="")
    assert code == OK
    done = finished(events)
    assert (done.outcome, done.exit_code) == (pb.RUN_OUTCOME_FAILED, 2)  # kv-counter: a failing kv tool exits 2
    first = next(c for c in tool_calls(events) if c.tool == "kv")
    assert (first.tool, first.allowed) == ("kv", False)
    assert "no agent id" in first.detail


def test_kv_through_the_scheduler_is_scoped_to_each_agent(scheduler: Client) -> None:
    """The scheduler's agent id is the executor's agent_id: two RunAgent calls are two agents, so each
    starts at 1 (a re-dispatched agent keeps its id and continues its count; see the scheduler suite)."""
    seen = []
    for _ in range(2):
        agent, out = scheduler.run_to_end("kv-counter", b'{"key": "visits"}', version="1.0.0")
        assert agent.state == sch_pb.AGENT_STATE_SUCCEEDED, agent.reason
        seen.append((agent.id, json.loads(out)["count"]))
    assert seen[0][0] != seen[1][0]
    assert [c for _, c in seen] == [1, 1]


def test_http_get_to_an_allowlisted_loopback_server(executor: Executor, stack: Stack) -> None:
    hits = stack.fast.hits
    url = stack.fast.url("/hello")
    events = ok_run(executor, "kv-counter-web", json.dumps({"key": "web", "url": url}).encode())
    result = json_output(events)
    assert (result["url"], result["status"], result["bytes"]) == (url, "ok", len(b"hello from loopback\n"))
    http = [c for c in tool_calls(events) if c.tool == "http_get"]
    assert len(http) == 1 and http[0].allowed and http[0].detail == f"http_get {url}: HTTP 200, 20 bytes"
    assert stack.fast.hits == hits + 1


def test_http_get_denied_at_call_time(executor: Executor, stack: Stack) -> None:
    denied_before = stack.metric("agentfactory_executor_tool_calls_total", tool="http_get", result="denied")
    slow_hits = stack.slow.hits
    # kv-counter-web grants only the fast server; the slow one is in the policy allowlist, not in its http_hosts.
    url = stack.slow.url("/nope")
    events = ok_run(executor, "kv-counter-web", json.dumps({"key": "web", "url": url}).encode())
    assert json_output(events)["status"] == "denied"
    [call] = [c for c in tool_calls(events) if c.tool == "http_get"]
    assert not call.allowed and call.detail == f"http_get {url}: {stack.slow.host_port} is not allowlisted"
    assert ("warn" in {level for level, _ in logs(events)}) and stack.slow.hits == slow_hits
    # The parent grants no hosts at all: the same call is denied even towards the fast server.
    events = ok_run(executor, "kv-counter", json.dumps({"key": "web", "url": stack.fast.url()}).encode())
    assert json_output(events)["status"] == "denied"
    # A WAT agent sees the raw code: -2 (AF_ERR_DENIED), and exits 1 as it documents.
    events, code, _ = executor.run_retrying("hostile-slow-tool", data=stack.fast.url().encode())
    assert code == OK and output(events) == b'{"http_get":-2}\n' and finished(events).exit_code == 1
    denied_after = stack.metric("agentfactory_executor_tool_calls_total", tool="http_get", result="denied")
    assert denied_after == denied_before + 3


def test_scratch_directory_is_private_per_run(executor: Executor) -> None:
    for _ in range(2):  # the second run finds no note.txt: every run gets a new, empty directory
        events = ok_run(executor, "scratch-probe")
        data = output(events)
        assert data[:2] == bytes([44, 63]), data[:2]  # ENOENT before creating it; EPERM for ../escape
        assert data[2:] == b"kept in scratch\n"


# The conformance agents and their number of checks: C, again (a second run finds no files), Go, and the
# Rust and WAT ones, whose templates also ship the read-only file /data/conformance.txt.
CONFORMANCE = [
    ("fs-conformance", 29),
    ("fs-conformance", 29),
    ("fs-conformance-go", 29),
    ("fs-conformance-rust", 39),
    ("fs-conformance-wat", 42),
]


def test_fs_conformance_agent_through_the_executor(executor: Executor) -> None:
    """The programs of examples/agents/fs-conformance{,-go,-rust,-wat} (standard file APIs, or raw WASI
    calls, at `/` and `/scratch`; the template's read-only file; escapes refused), published with their
    template files through the registry; tests/unit/executor/test_filesystem.py compares their reports
    with bare wasmtime-py's."""
    for name, checks in CONFORMANCE:
        report = output(ok_run(executor, name)).decode()
        assert report.endswith(f"passed {checks}/{checks}\n") and "FAIL" not in report, report


def test_no_host_directory_without_the_scratch_tool(executor: Executor) -> None:
    events, code, _ = executor.run_retrying("scratch-ungranted")
    assert code == OK
    done = finished(events)
    assert (done.outcome, done.exit_code) == (pb.RUN_OUTCOME_FAILED, 18)  # path_open on fd 3: EBADF (8) + 10


def test_max_tool_calls_cap(executor: Executor) -> None:
    events, code, details = executor.run_retrying("tool-spam")
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    done = finished(events)
    assert (done.outcome, done.limit) == (pb.RUN_OUTCOME_RESOURCE_EXHAUSTED, pb.LIMIT_TOOL_CALLS)
    assert details == done.reason == "the agent made more than max_tool_calls=5 tool calls"
    assert len(tool_calls(events)) == 5  # the five allowed calls are reported
    assert done.tool_calls == 6  # and the refused sixth attempt is counted
    again = ok_run(executor, "echo-upper", b"ok")
    assert output(again) == b"OK"
