"""Publish, get, verify, run, watch and cancel agents through the gateway, as a user would."""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.request
from collections.abc import Callable

import grpc
import pytest

from afctl.client import Client, open_channel
from afctl.examples import catalogue
from agentfactory.executor.v1 import executor_service_pb2 as ex_pb
from agentfactory.executor.v1 import executor_service_pb2_grpc as ex_grpc
from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from services.common.errors import FailedPrecondition
from tests.e2e.templates import publish_spinner
from tests.harness_mesh import E2EMesh

S = sch_pb
OK = grpc.StatusCode.OK
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
# A deadline against a hang, not a speed limit: the first run of a large module (the Go agents) may wait
# for its compile while the executors warm up on a loaded 2-core machine.
TIMEOUT = 90.0
TEXT = "The cat sat.\nThe dog sat too."
TEXT_STATS = {"words": 7, "lines": 2, "chars": 29, "top_word": "the"}


def _echo() -> tuple[bytes, bytes]:
    (echo,) = [t for t in catalogue("agents") if t.name == "echo-upper"]
    module = echo.module()
    assert module is not None
    return echo.manifest_json(), module


def _check_kv(out: dict[str, object]) -> None:
    # A fresh agent id gets a fresh kv store: the first run of every agent counts 1.
    assert out["key"] == "visits" and out["count"] == 1, out
    assert abs(int(out["now_ms"]) - time.time() * 1000) < 60_000, out  # type: ignore[call-overload]


# name: (input, check of the decoded output)
EXAMPLES: dict[str, tuple[bytes, Callable[[bytes], None]]] = {
    "echo-upper": (b"Hello, agents!", lambda out: _eq(out, b"HELLO, AGENTS!")),
    "text-stats": (json.dumps({"text": TEXT}).encode(), lambda out: _eq(json.loads(out), TEXT_STATS)),
    "text-stats-strict": (json.dumps({"text": TEXT}).encode(), lambda out: _eq(json.loads(out), TEXT_STATS)),
    "prime-sieve": (b'{"n": 100}', lambda out: _eq(json.loads(out), {"n": 100, "primes": 25, "largest": 97})),
    "kv-counter": (b'{"key": "visits"}', lambda out: _check_kv(json.loads(out))),
    "fs-conformance": (b"", lambda out: _eq(out.splitlines()[-1], b"passed 29/29")),
    "fs-conformance-go": (b"", lambda out: _eq(out.splitlines()[-1], b"passed 29/29")),
    # The same checks with Rust's std::fs and with raw WASI calls (WAT), plus the template's read-only file.
    "fs-conformance-rust": (b"", lambda out: _eq(out.splitlines()[-1], b"passed 39/39")),
    "fs-conformance-wat": (b"", lambda out: _eq(out.splitlines()[-1], b"passed 42/42")),
    # Reads its word list, a read-only template file at /data/words.txt; writing or creating there fails.
    "spell-check": (b"To be or not to be, that is the question", lambda out: _check_spell(out)),
}


def _check_spell(out: bytes) -> None:
    lines = out.decode().splitlines()
    assert lines[0] == "checked 10 words, 0 unknown", lines
    assert lines[1].startswith("read-only: yes (errno ") and lines[2].startswith("create: refused (errno "), lines


def _eq(got: object, want: object) -> None:
    assert got == want


def run(client: Client, name: str, data: bytes = b"", **kw: object) -> tuple[grpc.StatusCode, S.Agent, bytes, str]:
    """RunAgent to its end: (status, last Agent event, all output, status details)."""
    final, output = S.Agent(), bytearray()
    try:
        for event in client.run_agent(name, data, timeout=TIMEOUT, **kw):
            kind = event.WhichOneof("event")
            if kind == "agent":
                final = event.agent
            elif kind == "output":
                output += event.output.data
    except grpc.RpcError as exc:
        return exc.code(), final, bytes(output), exc.details() or ""
    return OK, final, bytes(output), ""


def test_every_example_agent_has_an_expected_output() -> None:
    assert {t.name for t in catalogue("agents")} == set(EXAMPLES)


def test_make_run_published_every_example_and_ran_one(e2e_mesh: E2EMesh) -> None:
    printed = e2e_mesh.quickstart_output
    for example in catalogue("agents"):
        assert example.ref in printed
    assert "text-stats verified offline" in printed
    assert "SUCCEEDED, exit 0" in printed


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_run_each_example_agent(name: str, as_role: Callable[[str], Client]) -> None:
    data, check = EXAMPLES[name]
    code, final, output, details = run(as_role("operator"), name, data)
    assert code == OK, details
    assert final.state == S.AGENT_STATE_SUCCEEDED and final.exit_code == 0, final
    assert final.template_name == name and final.template_version == "1.0.0"
    assert final.executor in ("executor-blue", "executor-green"), final.executor
    assert final.fuel_used > 0
    assert output == final.output
    check(output)


def test_publish_get_verify_offline_and_run(e2e_mesh: E2EMesh, as_role: Callable[[str], Client]) -> None:
    publisher = as_role("publisher")
    manifest, module = _echo()
    doc = json.loads(manifest)
    doc.update(name="e2e-published", version="1.2.3", labels={"suite": "e2e"})
    reply = publisher.publish(json.dumps(doc).encode(), module)
    assert reply.created
    # Publishing the same thing again is idempotent, not an error.
    again = publisher.publish(json.dumps(doc).encode(), module)
    assert not again.created and again.template.signature.signature == reply.template.signature.signature

    template = publisher.get_template("e2e-published", "1.2.3")
    signed = json.loads(template.canonical_manifest)
    assert signed["name"] == "e2e-published" and signed["version"] == "1.2.3"
    assert signed["module_sha256"] == hashlib.sha256(module).hexdigest()
    fetched = publisher.fetch_module(template.manifest.module_sha256)
    assert fetched == module
    # Offline: only the public keys from GetPublicKeys, no Verify RPC.
    assert publisher.verify_offline(template, fetched) == template.signature.key_version
    listed = publisher.list_templates(name="e2e-published")
    assert [(t.manifest.name, t.manifest.version) for t in listed] == [("e2e-published", "1.2.3")]
    # A tampered manifest does not verify.
    forged = type(template)()
    forged.CopyFrom(template)
    forged.canonical_manifest = template.canonical_manifest.replace(b"1.2.3", b"1.2.4")
    with pytest.raises(FailedPrecondition, match="signature does not match the manifest"):
        publisher.verify_offline(forged)

    code, final, output, details = run(as_role("operator"), "e2e-published", b"published end to end")
    assert code == OK, details
    assert final.state == S.AGENT_STATE_SUCCEEDED and output == b"PUBLISHED END TO END"


def test_create_then_watch_to_the_end(as_role: Callable[[str], Client]) -> None:
    op = as_role("operator")
    md = op.metadata
    request = S.CreateAgentRequest(
        template_name="prime-sieve", input=b'{"n": 2000000}', labels={"suite": "e2e"}, request_id="e2e-watch-1"
    )
    created = op.scheduler.CreateAgent(request, timeout=TIMEOUT, metadata=md).agent
    assert created.id and created.state in (S.AGENT_STATE_PENDING, S.AGENT_STATE_RUNNING, S.AGENT_STATE_SUCCEEDED)
    # The same request id is the same agent (a client retrying a create does not run it twice).
    assert op.scheduler.CreateAgent(request, timeout=TIMEOUT, metadata=md).agent.id == created.id

    # The contract: the first event is the agent now with its output so far, output events add what it
    # writes next, and the terminal agent carries the whole output. The agent may well have ended before
    # the watch starts (a loaded machine; a watch landing on the other color): then there is one event.
    states, streamed, final = [], bytearray(), S.Agent()
    stream = op.scheduler.WatchAgent(S.WatchAgentRequest(id=created.id), timeout=TIMEOUT, metadata=md)
    for event in stream:  # the server ends the stream once the agent is final
        kind = event.WhichOneof("event")
        if kind == "agent":
            if not states:
                streamed += event.agent.output
            states.append(event.agent.state)
            final = event.agent
        elif kind == "output":
            streamed += event.output.data
    assert states and states[-1] == S.AGENT_STATE_SUCCEEDED, states
    assert json.loads(final.output) == {"n": 2000000, "primes": 148933, "largest": 1999993}
    assert bytes(streamed) == final.output  # nothing missed, nothing twice
    output = final.output

    got = op.scheduler.GetAgent(S.GetAgentRequest(id=created.id), timeout=TIMEOUT, metadata=md).agent
    assert got.state == S.AGENT_STATE_SUCCEEDED and got.labels["suite"] == "e2e" and bytes(got.output) == output
    listed = op.scheduler.ListAgents(S.ListAgentsRequest(label_selector="suite=e2e"), timeout=TIMEOUT, metadata=md)
    assert created.id in [a.id for a in listed.agents]


def _cancelled_runs(mesh: E2EMesh, executor: str) -> float:
    """The runs an executor has ended because they were cancelled (its own counter, on its metrics port)."""
    pattern = re.compile(r'^agentfactory_executor_runs_total\{[^}]*outcome="cancelled"[^}]*\} (\S+)$', re.M)
    with urllib.request.urlopen(f"http://127.0.0.1:{mesh.topo.instance(executor).metrics}/metrics", timeout=10) as r:
        return sum(float(v) for v in pattern.findall(r.read().decode()))


def test_cancel_stops_a_long_running_agent_quickly(e2e_mesh: E2EMesh, as_role: Callable[[str], Client]) -> None:
    publisher, op = as_role("publisher"), as_role("operator")
    # A child of the infinite loop with fuel for ~15 s and a 30 s deadline: only a cancel ends it soon.
    description = "hostile-loop-export with the largest fuel and deadline the policy allows"
    publish_spinner(publisher, "e2e-spin", description, fuel=20_000_000_000)
    md = op.metadata
    agent = op.scheduler.CreateAgent(S.CreateAgentRequest(template_name="e2e-spin"), timeout=TIMEOUT, metadata=md).agent
    # Until it runs, however long a loaded machine takes to place it (pytest's timeout ends a hang); only
    # its fuel or deadline could end it first, and then the assert below says so.
    while agent.state == S.AGENT_STATE_PENDING:
        time.sleep(0.02)
        agent = op.scheduler.GetAgent(S.GetAgentRequest(id=agent.id), timeout=TIMEOUT, metadata=md).agent
    assert agent.state == S.AGENT_STATE_RUNNING and agent.executor in ("executor-blue", "executor-green"), agent
    before = _cancelled_runs(e2e_mesh, agent.executor)

    cancelled = op.scheduler.CancelAgent(S.CancelAgentRequest(id=agent.id), timeout=TIMEOUT, metadata=md).agent
    assert cancelled.state == S.AGENT_STATE_CANCELLED, cancelled
    # The watch sees the final state at once, and the agent stays cancelled.
    events = list(op.scheduler.WatchAgent(S.WatchAgentRequest(id=agent.id), timeout=TIMEOUT, metadata=md))
    assert [e.agent.state for e in events if e.WhichOneof("event") == "agent"][-1] == S.AGENT_STATE_CANCELLED
    # The sandbox really stopped, and the cancel stopped it: the executor that ran it counts a cancelled
    # run (its fuel or its deadline would count resource_exhausted or timed_out), with no bound on how long
    # a loaded machine takes to get there.
    while _cancelled_runs(e2e_mesh, agent.executor) <= before:
        time.sleep(0.02)
    # And no executor has a run in flight (GetCapacity is an admin call through the gateway; each call
    # lands on either color, so sample both many times).
    with open_channel(e2e_mesh.gateway, e2e_mesh.tls("admin")) as channel:
        executors = ex_grpc.ExecutorServiceStub(channel)
        while max(executors.GetCapacity(ex_pb.GetCapacityRequest(), timeout=TIMEOUT).busy for _ in range(20)):
            time.sleep(0.02)


# name: (RunAgent status, final state, a piece of the reason) -- the precise outcome of each hostile
# agent after the gateway, two sidecars, the scheduler and the executor sandbox.
HOSTILE = {
    "hostile-loop-export": (RESOURCE_EXHAUSTED, S.AGENT_STATE_FAILED, "used all of its fuel (limits.fuel=50000000)"),
    "hostile-loop-start": (grpc.StatusCode.DEADLINE_EXCEEDED, S.AGENT_STATE_TIMED_OUT, "timeout_ms=500"),
    "hostile-memory-bomb": (RESOURCE_EXHAUSTED, S.AGENT_STATE_FAILED, "ran out of memory"),
    "hostile-big-memory": (RESOURCE_EXHAUSTED, S.AGENT_STATE_FAILED, "limits.memory_bytes=16777216"),
    "hostile-deep-recursion": (RESOURCE_EXHAUSTED, S.AGENT_STATE_FAILED, "overflowed the wasm stack"),
    "hostile-stdout-flood": (RESOURCE_EXHAUSTED, S.AGENT_STATE_FAILED, "more than max_output_bytes=65536"),
    "hostile-trap": (OK, S.AGENT_STATE_FAILED, "wasm `unreachable` instruction executed"),
    "hostile-exit-code": (OK, S.AGENT_STATE_FAILED, "exited with code 3"),
    "hostile-undeclared-import": (grpc.StatusCode.FAILED_PRECONDITION, S.AGENT_STATE_FAILED, "env.spawn_process"),
    "hostile-denied-import": (grpc.StatusCode.FAILED_PRECONDITION, S.AGENT_STATE_FAILED, "does not grant"),
    # the scratch cap: ENOSPC at 16 MiB, then the agent exits with it
    "hostile-scratch-big-file": (RESOURCE_EXHAUSTED, S.AGENT_STATE_FAILED, "file system is full"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_agent_gets_its_precise_status_through_the_mesh(name: str, as_role: Callable[[str], Client]) -> None:
    (example,) = [t for t in catalogue("hostile") if t.name == name]
    as_role("publisher").publish(example.manifest_json(), example.module())
    want_code, want_state, reason = HOSTILE[name]
    op = as_role("operator")
    code, final, _, details = run(op, name)
    assert (code, final.state) == (want_code, want_state), (code, details, final)
    assert reason in final.reason, final.reason
    if code != OK:
        assert details == final.reason  # the status says why, not just that it failed
    # And the mesh serves the next agent normally.
    code, final, output, details = run(op, "echo-upper", b"after " + name.encode())
    assert code == OK and output == b"AFTER " + name.upper().encode(), details


def test_huge_module_is_refused_at_publish(as_role: Callable[[str], Client]) -> None:
    (huge,) = [t for t in catalogue("hostile") if t.name == "hostile-huge-module"]
    with pytest.raises(grpc.RpcError) as refused:
        as_role("publisher").publish(huge.manifest_json(), huge.module())
    assert refused.value.code() == RESOURCE_EXHAUSTED
    assert "rule module.max_bytes" in (refused.value.details() or "")
    with pytest.raises(grpc.RpcError) as missing:
        as_role("viewer").get_template("hostile-huge-module")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_unknown_template_is_not_found(as_role: Callable[[str], Client]) -> None:
    code, final, _, details = run(as_role("operator"), "no-such-template")
    assert code == grpc.StatusCode.NOT_FOUND and "no-such-template" in details
    assert final == S.Agent()
    with pytest.raises(grpc.RpcError) as bad:
        as_role("publisher").registry.GetTemplate(
            reg_pb.GetTemplateRequest(name="echo-upper", version="not-semver"), timeout=TIMEOUT
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
