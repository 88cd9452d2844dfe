"""The sandbox with real wasmtime: every limit ends its run with the right outcome, and the next run on
the same engine still works. Real example and hostile modules (make examples) plus small WAT cases."""

from __future__ import annotations

import struct
import threading

import pytest

from services.common.errors import FailedPrecondition
from services.executor.events import LimitKind, Log, Outcome, Started, ToolCalled
from tests.unit.executor.conftest import Runner, SlowGate, wasm_file

I32_TOOL = '(import "agentfactory" "{name}" (func $tool (param {params}) (result i32)))'
WRITE = '(import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))'


def tool_module(name: str, params: str, args: str, data: str = "") -> str:
    """A module that calls one tool once and writes its i32 result to stdout as 4 LE bytes."""
    return f"""(module {I32_TOOL.format(name=name, params=params)} {WRITE}
      (memory (export "memory") 1)
      (data (i32.const 100) "{data}")
      (func (export "_start")
        (i32.store (i32.const 0) (call $tool {args}))
        (i32.store (i32.const 8) (i32.const 0)) (i32.store (i32.const 12) (i32.const 4))
        (drop (call $w (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16)))))"""


def result_of(outcome) -> int:  # type: ignore[no-untyped-def]
    assert outcome.finished.outcome is Outcome.SUCCEEDED, outcome.finished
    return struct.unpack("<i", outcome.output[:4])[0]


def test_echo_upper_succeeds_with_output_and_started(runner: Runner) -> None:
    out = runner.run(wasm_file("echo-upper"), b"hello, agent")
    assert out.finished.outcome is Outcome.SUCCEEDED and out.finished.exit_code == 0
    assert out.output == b"HELLO, AGENT"
    assert isinstance(out.events[0], Started)
    assert out.finished.output_bytes == 12 and out.finished.fuel_used > 0 and out.finished.peak_memory_bytes == 65536


def test_fuel_limit(runner: Runner) -> None:
    out = runner.run(wasm_file("hostile-loop-export"), fuel=1_000_000)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.RESOURCE_EXHAUSTED, LimitKind.FUEL)
    assert out.finished.fuel_used == 1_000_000


def test_deadline_in_start_export(runner: Runner) -> None:
    # Fuel for hours: only the deadline can end this loop, and not before it has passed.
    out = runner.run(wasm_file("hostile-loop-export"), fuel=10**15, timeout_ms=100)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.TIMED_OUT, LimitKind.DEADLINE)
    assert out.finished.duration_seconds >= 0.1


def test_deadline_in_wasm_start_function_bounds_instantiation(runner: Runner) -> None:
    out = runner.run(wasm_file("hostile-loop-start"), fuel=10**15, timeout_ms=100)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.TIMED_OUT, LimitKind.DEADLINE)
    assert "instantiation" in out.finished.reason
    assert not any(isinstance(e, Started) for e in out.events)


def test_memory_grow_bomb(runner: Runner) -> None:
    out = runner.run(wasm_file("hostile-memory-bomb"), memory_bytes=4 << 20)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.RESOURCE_EXHAUSTED, LimitKind.MEMORY)
    assert out.finished.peak_memory_bytes <= 4 << 20


def test_big_initial_memory_refused_at_instantiation(runner: Runner) -> None:
    out = runner.run(wasm_file("hostile-big-memory"))
    assert (out.finished.outcome, out.finished.limit) == (Outcome.RESOURCE_EXHAUSTED, LimitKind.MEMORY)


def test_stack_overflow(runner: Runner) -> None:
    out = runner.run(wasm_file("hostile-deep-recursion"))
    assert (out.finished.outcome, out.finished.limit) == (Outcome.RESOURCE_EXHAUSTED, LimitKind.STACK)
    assert out.finished.trap == "stack_overflow"


def test_output_flood_is_capped(runner: Runner) -> None:
    out = runner.run(wasm_file("hostile-stdout-flood"), max_output_bytes=1000)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.RESOURCE_EXHAUSTED, LimitKind.OUTPUT)
    assert len(out.output) == 1000 == out.finished.output_bytes


def test_trap_is_named_and_nonzero_exit_is_failed(runner: Runner) -> None:
    trap = runner.run(wasm_file("hostile-trap"))
    assert trap.finished.outcome is Outcome.FAILED and trap.finished.trap == "unreachable"
    code = runner.run(wasm_file("hostile-exit-code"))
    assert code.finished.outcome is Outcome.FAILED and code.finished.exit_code != 0


def test_stderr_becomes_log_lines(runner: Runner) -> None:
    wat = f"""(module {WRITE} (memory (export "memory") 1) (data (i32.const 100) "one\\ntwo\\npartial")
      (func (export "_start") (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 15))
        (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 16)))))"""
    out = runner.run(wat)
    assert [(e.level, e.message) for e in out.events if isinstance(e, Log)] == [
        ("stderr", "one"),
        ("stderr", "two"),
        ("stderr", "partial"),
    ]


def test_tool_call_cap(runner: Runner) -> None:
    wat = """(module (import "agentfactory" "clock_now_ms" (func $now (result i64)))
      (memory (export "memory") 1)
      (func (export "_start") (loop $l (drop (call $now)) (br $l))))"""
    out = runner.run(wat, tools=frozenset({"clock"}), max_tool_calls=5)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.RESOURCE_EXHAUSTED, LimitKind.TOOL_CALLS)
    assert sum(isinstance(e, ToolCalled) for e in out.events) == 5


def test_out_of_bounds_pointers_return_bounds_error(runner: Runner) -> None:
    tools = frozenset({"log", "kv", "random"})
    assert (
        result_of(
            runner.run(
                tool_module("log", "i32 i32 i32", "(i32.const 0) (i32.const 65530) (i32.const 100)"), tools=tools
            )
        )
        == -3
    )
    assert (
        result_of(
            runner.run(tool_module("log", "i32 i32 i32", "(i32.const 0) (i32.const -1) (i32.const 1)"), tools=tools)
        )
        == -3
    )
    assert (
        result_of(runner.run(tool_module("random_fill", "i32 i32", "(i32.const 65535) (i32.const 2)"), tools=tools))
        == -3
    )
    kv_get = tool_module(
        "kv_get", "i32 i32 i32 i32", "(i32.const 100) (i32.const 1) (i32.const 65000) (i32.const 4096)", "k"
    )
    assert result_of(runner.run(kv_get, tools=tools)) == -3
    out = runner.run(wasm_file("hostile-oob-pointer"), tools=frozenset({"log", "kv"}))
    assert out.finished.outcome is Outcome.SUCCEEDED  # every bad pointer was answered, none crashed the host


def test_kv_round_trip_is_per_agent(runner: Runner) -> None:
    tools = frozenset({"kv"})
    put = tool_module(
        "kv_put", "i32 i32 i32 i32", "(i32.const 100) (i32.const 3) (i32.const 103) (i32.const 5)", "keyvalue"
    )
    assert result_of(runner.run(put, tools=tools)) == 0
    get = tool_module(
        "kv_get", "i32 i32 i32 i32", "(i32.const 100) (i32.const 3) (i32.const 200) (i32.const 64)", "key"
    )
    assert result_of(runner.run(get, tools=tools)) == 5
    assert runner.kv.get("agent-1", b"key") == b"value" and runner.kv.get("agent-2", b"key") is None


def test_undeclared_and_ungranted_imports_are_refused_with_the_import_named(runner: Runner) -> None:
    with pytest.raises(FailedPrecondition, match=r"env\.spawn_process"):
        runner.prepare(wasm_file("hostile-undeclared-import"))
    with pytest.raises(FailedPrecondition, match=r"agentfactory\.\w+ \(tool"):
        runner.prepare(wasm_file("hostile-denied-import"))
    with pytest.raises(FailedPrecondition, match=r"agentfactory\.exec"):
        runner.prepare(
            '(module (import "agentfactory" "exec" (func)) (memory (export "memory") 1) (func (export "_start")))'
        )


HTTP = "(i32.const 100) (i32.const {n}) (i32.const 1024) (i32.const 4096)"


def http_module(url: str) -> str:
    return tool_module("http_get", "i32 i32 i32 i32", HTTP.format(n=len(url)), url)


def test_http_allowlist(runner: Runner, http_server: str) -> None:
    tools = frozenset({"http_get"})
    runner.http_allowed = {http_server}
    ok = runner.run(http_module(f"http://{http_server}/hello"), tools=tools)
    assert result_of(ok) == len(b"hello from loopback")
    assert any(isinstance(e, ToolCalled) and e.allowed for e in ok.events)
    runner.http_allowed = set()
    denied = runner.run(http_module(f"http://{http_server}/hello"), tools=tools)
    assert result_of(denied) == -2
    assert any(isinstance(e, ToolCalled) and not e.allowed for e in denied.events)
    runner.http_allowed = {http_server}
    assert result_of(runner.run(http_module(f"http://{http_server}/missing"), tools=tools)) == -5
    assert result_of(runner.run(http_module(f"https://{http_server}/"), tools=tools)) == -6


def test_slow_http_is_cut_at_the_run_deadline(runner: Runner, http_server: str, slow_gate: SlowGate) -> None:
    runner.http_allowed = {http_server}
    out = runner.run(http_module(f"http://{http_server}/slow"), tools=frozenset({"http_get"}), timeout_ms=300)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.TIMED_OUT, LimitKind.DEADLINE)
    assert slow_gate.answered == 0, "the run waited for the server's answer instead of ending at its deadline"


def test_cancel_from_another_thread_stops_within_a_tick(runner: Runner) -> None:
    prepared = runner.prepare(wasm_file("hostile-loop-export"))
    state = runner.state(prepared, fuel=10**15, timeout_ms=10_000)
    threading.Timer(0.1, state.cancel).start()
    finished = runner.sandbox.run(prepared, state)
    # Fuel for hours and a 10 s deadline: CANCELLED means the cancel, and nothing else, ended the loop.
    assert finished.outcome is Outcome.CANCELLED


def test_engine_keeps_working_after_every_hostile_module(runner: Runner) -> None:
    for name in ("hostile-loop-export", "hostile-memory-bomb", "hostile-deep-recursion", "hostile-stdout-flood"):
        runner.run(wasm_file(name), fuel=5_000_000, timeout_ms=200)
        assert runner.run(wasm_file("echo-upper"), b"still fine").output == b"STILL FINE"


def test_parallel_runs_on_threads(runner: Runner) -> None:
    results: list[bytes] = []

    def one(i: int) -> None:
        results.append(runner.run(wasm_file("echo-upper"), f"run {i}".encode()).output)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(f"RUN {i}".encode() for i in range(8))
