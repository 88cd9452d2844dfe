"""A run blocked in a host call (WASI or tool) ends at its deadline and on a cancel, like one in wasm code.

No wall-clock upper bound is asserted: a run that kept waiting would take the seconds its guest asked
for (4 s of poll_oneoff, 3 s of a slow HTTP answer, tens of seconds of copying), so each test checks the
run's outcome and that it ended before that much time, not how quickly the machine got to it."""

from __future__ import annotations

import struct
import threading
import time

from services.executor.events import LimitKind, Outcome
from tests.unit.executor.conftest import Runner, SlowGate, wasm_file

SLEEP_S = 4.0


def _cancel_after(state, seconds: float) -> threading.Thread:  # type: ignore[no-untyped-def]
    thread = threading.Thread(target=lambda: (time.sleep(seconds), state.cancel()), daemon=True)
    thread.start()
    return thread


def test_poll_oneoff_sleep_ends_at_the_deadline(runner: Runner) -> None:
    out = runner.run(wasm_file("hostile-sleep-poll"), timeout_ms=200)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.TIMED_OUT, LimitKind.DEADLINE), out.finished
    assert 0.2 <= out.finished.duration_seconds < SLEEP_S


def test_poll_oneoff_sleep_ends_on_cancel(runner: Runner) -> None:
    prepared = runner.prepare(wasm_file("hostile-sleep-poll"))
    state = runner.state(prepared, timeout_ms=30_000)
    _cancel_after(state, 0.1)
    finished = runner.sandbox.run(prepared, state)
    assert finished.outcome is Outcome.CANCELLED, finished
    assert finished.duration_seconds < SLEEP_S


def test_a_short_poll_sleeps_and_returns_its_clock_event(runner: Runner) -> None:
    wat = """(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (i64.store (i32.const 0) (i64.const 42)) (i32.store8 (i32.const 8) (i32.const 0))
        (i32.store (i32.const 16) (i32.const 1)) (i64.store (i32.const 24) (i64.const 20000000))
        (i32.store (i32.const 200) (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 204)))
        ;; stdout: errno, nevents, then the event's userdata, error and type
        (i64.store (i32.const 208) (i64.load (i32.const 64)))
        (i32.store (i32.const 216) (i32.load16_u (i32.const 72)))
        (i32.store (i32.const 220) (i32.load8_u (i32.const 74)))
        (i32.store (i32.const 300) (i32.const 200)) (i32.store (i32.const 304) (i32.const 24))
        (drop (call $w (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 308)))))"""
    out = runner.run(wat, timeout_ms=2000)
    assert out.finished.outcome is Outcome.SUCCEEDED, out.finished
    errno, nevents, userdata, error, kind = struct.unpack("<IIQII", out.output)
    assert (errno, nevents, userdata, error, kind) == (0, 1, 42, 0, 0)
    assert out.finished.duration_seconds >= 0.02


def test_fd_write_with_huge_iovecs_ends_at_the_deadline(runner: Runner) -> None:
    out = runner.run(wasm_file("hostile-write-flood"), fuel=10**15, timeout_ms=200)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.TIMED_OUT, LimitKind.DEADLINE), out.finished


def test_fd_write_moves_at_most_one_mib_per_call(runner: Runner) -> None:
    wat = """(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 64)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 3000000))
        (i32.store (i32.const 100) (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 104)))
        (i32.store (i32.const 16) (i32.const 100)) (i32.store (i32.const 20) (i32.const 8))
        (drop (call $w (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))"""
    out = runner.run(wat, memory_bytes=4 << 20)
    assert out.finished.outcome is Outcome.SUCCEEDED, out.finished
    assert struct.unpack("<II", out.output) == (0, 1 << 20)  # a short write: the guest retries the rest


def test_random_get_over_all_memory_ends_at_the_deadline(runner: Runner) -> None:
    random = frozenset({"random"})  # granted: each 16 MB call is refused (over the cap), the loop goes on
    out = runner.run(wasm_file("hostile-random-flood"), tools=random, fuel=10**15, timeout_ms=200)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.TIMED_OUT, LimitKind.DEADLINE), out.finished


def test_random_get_fills_the_buffer(runner: Runner) -> None:
    wat = """(module
      (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 4)
      (func (export "_start")
        (i32.store (i32.const 0) (call $r (i32.const 1024) (i32.const 65536)))
        (i32.store (i32.const 8) (i32.const 0)) (i32.store (i32.const 12) (i32.const 4))
        (drop (call $w (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16)))
        (i32.store (i32.const 8) (i32.const 1024)) (i32.store (i32.const 12) (i32.const 65536))
        (drop (call $w (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16)))))"""
    out = runner.run(wat, tools=frozenset({"random"}), max_output_bytes=1 << 20)
    assert out.finished.outcome is Outcome.SUCCEEDED, out.finished
    assert out.output[:4] == b"\0\0\0\0" and len(out.output) == 65540
    assert out.output[4:].count(0) < 1000  # random bytes, not the zeroed memory


def test_clock_time_get_answers_realtime_and_monotonic(runner: Runner) -> None:
    wat = """(module
      (import "wasi_snapshot_preview1" "clock_time_get" (func $c (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (i32.store (i32.const 100) (call $c (i32.const 0) (i64.const 1) (i32.const 104)))
        (i32.store (i32.const 112) (call $c (i32.const 1) (i64.const 1) (i32.const 116)))
        (i32.store (i32.const 124) (call $c (i32.const 2) (i64.const 1) (i32.const 128)))
        (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 28))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""
    before = time.time_ns()
    out = runner.run(wat, tools=frozenset({"clock"}))
    real_errno, real, mono_errno, mono, cpu_errno = struct.unpack("<IQIQI", out.output)
    assert (real_errno, mono_errno, cpu_errno) == (0, 0, 8)  # CPU-time clocks: EBADF, as wasmtime's WASI
    assert before <= real <= time.time_ns() and 0 < mono <= time.monotonic_ns()


def test_a_tool_call_after_the_deadline_ends_the_run(runner: Runner, http_server: str, slow_gate: SlowGate) -> None:
    runner.http_allowed.add(http_server)
    prepared = runner.prepare(wasm_file("hostile-slow-tool"), frozenset({"http_get"}))
    state = runner.state(prepared, f"http://{http_server}/slow".encode(), frozenset({"http_get"}), timeout_ms=30_000)
    _cancel_after(state, 0.2)
    finished = runner.sandbox.run(prepared, state)
    assert finished.outcome is Outcome.CANCELLED, finished
    assert slow_gate.answered == 0, "the run waited for the server's answer instead of ending at the cancel"


def test_a_module_that_can_wait_in_wasi_never_runs_inline(runner: Runner) -> None:
    for hostile in ("hostile-sleep-poll", "hostile-random-flood"):
        assert not runner.prepare(wasm_file(hostile)).pure, hostile
    assert runner.prepare(wasm_file("hostile-write-flood")).pure  # one fd_write is bounded work
