"""Every hostile agent (examples/README.md) through real signer, registry and executor processes, and some
through the scheduler's RunAgent: each ends with the precise outcome, limit and status, and the same
executor serves a normal run right after."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import pytest

from afctl.client import Client
from afctl.examples import catalogue
from agentfactory.executor.v1 import executor_service_pb2 as pb
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from tests.integration.executor.conftest import (
    DEEP_NESTING,
    HUGE,
    MANY_FUNCTIONS,
    REFUSED_AT_PUBLISH,
    Executor,
    Stack,
    finished,
    kinds,
    logs,
    output,
    tool_calls,
)

OK = grpc.StatusCode.OK
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
MIB = 1 << 20

Events = list[pb.RunEvent]


@dataclass(frozen=True)
class Expect:
    code: grpc.StatusCode
    outcome: int = pb.RUN_OUTCOME_UNSPECIFIED  # unused when the run is refused (no events)
    limit: int = pb.LIMIT_UNSPECIFIED
    trap: str = ""
    exit_code: int = 0
    ran: bool = True  # False: instantiation never finished, so no RunStarted event
    details: str = ""  # for refusals: a piece of the status message
    check: Callable[[Stack, Events, float], None] = field(default=lambda stack, events, elapsed: None)


def _loop_start(stack: Stack, events: Events, elapsed: float) -> None:
    done = finished(events)
    assert "during instantiation" in done.reason, done.reason
    # The start function spins with fuel for seconds: LIMIT_DEADLINE (checked by the caller) says the epoch
    # deadline (500 ms) stopped it, not its fuel (LIMIT_FUEL). No time bound above it: on a loaded machine
    # the stop may come late. (A run that never finished instantiating reports no fuel used.)
    assert done.duration.ToNanoseconds() / 1e9 >= 0.45, done.duration


def _memory_bomb(stack: Stack, events: Events, elapsed: float) -> None:
    done = finished(events)
    assert done.peak_memory_bytes == 16 * MIB
    assert ("stderr", "memory-bomb: memory.grow failed at 0x00000100 pages") in logs(events)


def _peak_at_limit(events: Events) -> None:
    done = finished(events)
    assert done.peak_memory_bytes == 16 * MIB, done
    assert "in its start function" not in done.reason and "memory_bytes=16777216" in done.reason, done.reason


def _big_memory(stack: Stack, events: Events, elapsed: float) -> None:
    done = finished(events)
    assert "memory_bytes=16777216" in done.reason and "exceeds memory limits" in done.reason, done.reason
    assert done.peak_memory_bytes == 0 and done.fuel_used == 0


def _stdout_flood(stack: Stack, events: Events, elapsed: float) -> None:
    done = finished(events)
    data = output(events)
    assert len(data) == done.output_bytes == 65536, (len(data), done.output_bytes)
    assert data == (b"A" * 63 + b"\n") * 1024  # 64-byte lines in 4 KiB writes: cut at the cap exactly
    assert "max_output_bytes=65536" in done.reason


OOB_JSON = (
    b'{"log_ok":0,"log_straddle":-3,"log_wrap":-3,"log_far":-3,"kv_put_key_oob":-3,'
    b'"kv_put_val_oob":-3,"kv_put_ok":0,"kv_get_buf_oob":-3}\n'
)


def _oob_pointer(stack: Stack, events: Events, elapsed: float) -> None:
    assert output(events) == OOB_JSON
    done = finished(events)
    assert done.tool_calls == 8 and len(tool_calls(events)) == 8
    assert logs(events) == [("info", "oob-pointer: probing tool bounds checks")]


def _slow_tool(stack: Stack, events: Events, elapsed: float) -> None:
    done = finished(events)
    # Not before the run's deadline (1 s); what ended it is named below, so no bound after it.
    assert done.duration.ToNanoseconds() / 1e9 >= 1.0, done.duration
    assert elapsed >= 1.0
    [call] = tool_calls(events)
    assert call.tool == "http_get" and call.allowed and "deadline" in call.detail, call
    assert "timeout_ms=1000" in done.reason


def _trap(stack: Stack, events: Events, elapsed: float) -> None:
    assert "wasm `unreachable` instruction executed" in finished(events).reason


def _in_host_call(stack: Stack, events: Events, elapsed: float) -> None:
    done = finished(events)
    assert "timeout_ms=300" in done.reason, done.reason
    assert done.duration.ToNanoseconds() / 1e9 >= 0.3, done.duration


def _exit_code(stack: Stack, events: Events, elapsed: float) -> None:
    assert logs(events) == [("stderr", "exit-code: giving up on purpose with status 3")]
    assert finished(events).reason == "the agent exited with code 3"


SCRATCH_CAP, SCRATCH_ENTRIES = 16 * MIB, 1024  # the executor's defaults (services/executor/sandbox/scratch.py)


def _scratch_full(printed: Callable[[int], bool]) -> Callable[[Stack, Events, float], None]:
    """The agent was told ENOSPC (51), exited with it, and had got as far as `printed` allows."""

    def check(stack: Stack, events: Events, elapsed: float) -> None:
        done = finished(events)
        assert "file system is full" in done.reason and "exited with code 51" in done.reason, done.reason
        assert any(level == "warn" and "file system is full" in text for level, text in logs(events)), logs(events)
        count = int(output(events))
        assert printed(count), count

    return check


def _scratch(printed: Callable[[int], bool]) -> Expect:
    return Expect(
        RESOURCE_EXHAUSTED,
        pb.RUN_OUTCOME_RESOURCE_EXHAUSTED,
        pb.LIMIT_SCRATCH,
        exit_code=51,
        check=_scratch_full(printed),
    )


def _fs_escape(stack: Stack, events: Events, elapsed: float) -> None:
    # With no host path on stdin it aims at /etc/passwd and skips the directory symlink: 64 checks, not
    # 66 (each check and its errno: tests/unit/executor/test_fs_hostile.py, and tests/integration/executor/
    # test_fs_hostile.py through this executor with a canary).
    assert output(events).endswith(b"\npassed 64/64\n"), output(events).decode()


def _fs_fd_flood(stack: Stack, events: Events, elapsed: float) -> None:
    assert output(events) == b"opened 64, last errno 0\n"


def _fs_isolation(stack: Stack, events: Events, elapsed: float) -> None:
    assert output(events) == b"preopens ok\nunknown input\n"  # its parts are chosen by input (test_fs_hostile.py)


HOSTILE: dict[str, Expect] = {
    "hostile-loop-export": Expect(
        RESOURCE_EXHAUSTED,
        pb.RUN_OUTCOME_RESOURCE_EXHAUSTED,
        pb.LIMIT_FUEL,
        trap="out_of_fuel",
        check=lambda stack, events, elapsed: _fuel_all_used(events, 50_000_000),
    ),
    "hostile-loop-start": Expect(
        DEADLINE_EXCEEDED, pb.RUN_OUTCOME_TIMED_OUT, pb.LIMIT_DEADLINE, ran=False, check=_loop_start
    ),
    "hostile-memory-bomb": Expect(
        RESOURCE_EXHAUSTED,
        pb.RUN_OUTCOME_RESOURCE_EXHAUSTED,
        pb.LIMIT_MEMORY,
        trap="memory_out_of_bounds",
        check=_memory_bomb,
    ),
    "hostile-start-memory-bomb": Expect(
        RESOURCE_EXHAUSTED,
        pb.RUN_OUTCOME_RESOURCE_EXHAUSTED,
        pb.LIMIT_MEMORY,
        trap="memory_out_of_bounds",
        ran=False,
        check=lambda stack, events, elapsed: _peak_at_limit(events),
    ),
    "hostile-big-memory": Expect(
        RESOURCE_EXHAUSTED, pb.RUN_OUTCOME_RESOURCE_EXHAUSTED, pb.LIMIT_MEMORY, ran=False, check=_big_memory
    ),
    "hostile-deep-recursion": Expect(
        RESOURCE_EXHAUSTED, pb.RUN_OUTCOME_RESOURCE_EXHAUSTED, pb.LIMIT_STACK, trap="stack_overflow"
    ),
    "hostile-denied-import": Expect(
        grpc.StatusCode.FAILED_PRECONDITION,
        details="module imports agentfactory.http_get (tool 'http_get'), which the signed manifest does not grant",
    ),
    "hostile-undeclared-import": Expect(
        grpc.StatusCode.FAILED_PRECONDITION,
        details="module imports env.spawn_process; only wasi_snapshot_preview1 and granted agentfactory",
    ),
    "hostile-stdout-flood": Expect(
        RESOURCE_EXHAUSTED, pb.RUN_OUTCOME_RESOURCE_EXHAUSTED, pb.LIMIT_OUTPUT, check=_stdout_flood
    ),
    "hostile-oob-pointer": Expect(OK, pb.RUN_OUTCOME_SUCCEEDED, check=_oob_pointer),
    "slow-tool-web": Expect(DEADLINE_EXCEEDED, pb.RUN_OUTCOME_TIMED_OUT, pb.LIMIT_DEADLINE, check=_slow_tool),
    "hostile-trap": Expect(OK, pb.RUN_OUTCOME_FAILED, trap="unreachable", check=_trap),
    # Blocked in a WASI host call: each ends at its 300 ms deadline, long before the call would have
    # returned by itself. No time bound needed to see a dodge: sleep-poll would end SUCCEEDED after its
    # 4 s; one write-flood call copies ~16 GiB, tens of seconds, so the client's 10 s deadline would end
    # the call with no Finished event; random-flood's calls are cut to 64 KiB (a unit test checks it).
    "hostile-sleep-poll": Expect(DEADLINE_EXCEEDED, pb.RUN_OUTCOME_TIMED_OUT, pb.LIMIT_DEADLINE, check=_in_host_call),
    "hostile-write-flood": Expect(DEADLINE_EXCEEDED, pb.RUN_OUTCOME_TIMED_OUT, pb.LIMIT_DEADLINE, check=_in_host_call),
    "hostile-random-flood": Expect(DEADLINE_EXCEEDED, pb.RUN_OUTCOME_TIMED_OUT, pb.LIMIT_DEADLINE, check=_in_host_call),
    "hostile-exit-code": Expect(OK, pb.RUN_OUTCOME_FAILED, exit_code=3, check=_exit_code),
    # The scratch cap: bytes in one file, entries, blocks of a sparse file, a tree as deep as the entries.
    "hostile-scratch-big-file": _scratch(lambda n: SCRATCH_CAP - 256 * 1024 <= n <= SCRATCH_CAP),
    "hostile-scratch-many-files": _scratch(lambda n: n == SCRATCH_ENTRIES - 1),
    "hostile-scratch-sparse-seek": _scratch(lambda n: SCRATCH_CAP // 4096 - 64 <= n < SCRATCH_CAP // 4096),
    "hostile-scratch-deep-dirs": _scratch(lambda n: n == SCRATCH_ENTRIES - 1),
    # The file system's walls (escapes, links, renames, rights over the read-only template file): every
    # attempt refused with its errno, so the run succeeds. Some 70 file-system calls: no tight time bound.
    "hostile-fs-escape": Expect(OK, pb.RUN_OUTCOME_SUCCEEDED, check=_fs_escape),
    "hostile-fs-isolation": Expect(OK, pb.RUN_OUTCOME_FAILED, exit_code=2, check=_fs_isolation),
    # Empty input: 64 descriptors only (its flood, which takes the process's every descriptor, is a unit test).
    "hostile-fs-fd-flood": Expect(OK, pb.RUN_OUTCOME_SUCCEEDED, check=_fs_fd_flood),
}


def _fuel_all_used(events: Events, fuel: int) -> None:
    done = finished(events)
    assert done.fuel_used == fuel, done.fuel_used  # all of it: the fuel ended the run, not the 5 s deadline


def test_every_hostile_agent_is_covered() -> None:
    published = {t.name for t in catalogue("hostile")} - REFUSED_AT_PUBLISH - {"hostile-slow-tool"}
    assert published <= set(HOSTILE), published - set(HOSTILE)


def _input_for(stack: Stack, name: str) -> bytes:
    return json.dumps({"url": stack.slow.url("/slow")}).encode() if name == "slow-tool-web" else b""


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_agent_ends_precisely_and_the_executor_keeps_serving(
    name: str, executor: Executor, stack: Stack
) -> None:
    want = HOSTILE[name]
    began = time.monotonic()
    events, code, details = executor.run_retrying(name, data=_input_for(stack, name))
    elapsed = time.monotonic() - began
    assert code == want.code, (name, code, details, kinds(events))
    if not want.outcome:  # refused before the run: no event at all, the status names the import
        assert events == [] and want.details in details, details
    else:
        assert kinds(events)[0] == "accepted"
        assert ("started" in kinds(events)) == want.ran, kinds(events)
        done = finished(events)
        assert (done.outcome, done.limit, done.trap, done.exit_code) == (
            want.outcome,
            want.limit,
            want.trap,
            want.exit_code,
        ), done
        if code != OK:
            assert details == done.reason  # the status message is the run's reason
        want.check(stack, events, elapsed)
    again, code, details = executor.run_retrying("echo-upper", data=b"still serving")
    assert code == OK, details
    assert output(again) == b"STILL SERVING"


def test_huge_module_is_refused_at_publish_and_never_reaches_the_executor(executor: Executor, stack: Stack) -> None:
    huge = next(t for t in catalogue("hostile") if t.name == HUGE)
    module = huge.module()
    assert module is not None and len(module) == 9_437_245
    with stack.client() as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.publish(huge.manifest_json(), module)
        assert refused.value.code() == RESOURCE_EXHAUSTED
        assert refused.value.details() == (
            "module_size 9437245 exceeds the policy limit of 8388608 bytes (rule module.max_bytes)"
        )
        with pytest.raises(grpc.RpcError) as missing:
            client.get_template(HUGE, "1.0.0")
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    events, code, _ = executor.run(HUGE)
    assert (code, events) == (grpc.StatusCode.NOT_FOUND, [])


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (MANY_FUNCTIONS, "module has 60000 functions; the policy allows at most 20000 (rule module.max_functions)"),
        (
            DEEP_NESTING,
            "module has 60000 levels of block nesting in one function; the policy allows at most 5000 "
            "(rule module.max_nesting)",
        ),
    ],
)
def test_costly_to_compile_module_is_refused_at_publish_naming_the_rule(name: str, why: str, stack: Stack) -> None:
    hostile = next(t for t in catalogue("hostile") if t.name == name)
    with stack.client() as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.publish(hostile.manifest_json(), hostile.module())
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == why
        with pytest.raises(grpc.RpcError) as missing:
            client.get_template(name, "1.0.0")
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


# --- through the scheduler -------------------------------------------------------------------------

VIA_SCHEDULER = {
    # name: (RunAgent status, final state, a piece of the reason)
    "hostile-loop-export": (RESOURCE_EXHAUSTED, sch_pb.AGENT_STATE_FAILED, "used all of its fuel"),
    "hostile-loop-start": (DEADLINE_EXCEEDED, sch_pb.AGENT_STATE_TIMED_OUT, "timeout_ms=500"),
    "hostile-trap": (OK, sch_pb.AGENT_STATE_FAILED, "wasm `unreachable` instruction executed"),
    "hostile-undeclared-import": (grpc.StatusCode.FAILED_PRECONDITION, sch_pb.AGENT_STATE_FAILED, "env.spawn_process"),
}


@pytest.mark.parametrize("name", list(VIA_SCHEDULER))
def test_hostile_agent_through_run_agent(name: str, scheduler: Client) -> None:
    want_code, want_state, reason = VIA_SCHEDULER[name]
    final = sch_pb.Agent()
    code = OK
    try:
        for event in scheduler.run_agent(name, version="1.0.0", timeout=10):
            if event.WhichOneof("event") == "agent":
                final = event.agent
    except grpc.RpcError as exc:
        code = exc.code()
    assert (code, final.state) == (want_code, want_state), (code, final)
    assert reason in final.reason, final.reason
    state, out = scheduler.run_to_end("echo-upper", b"after " + name.encode(), version="1.0.0")
    assert state.state == sch_pb.AGENT_STATE_SUCCEEDED and out == b"AFTER " + name.upper().encode()
