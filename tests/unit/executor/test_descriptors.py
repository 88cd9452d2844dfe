"""The per-run bound on open descriptors and the stdio a run's descriptor table keeps (wasi_files.py,
fs_calls.py): the table alone, then guests in the real sandbox, with `scratch` and with template files
only (each links its own set of our WASI calls; stdout and stderr are the executor's in both)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import wasmtime

from services.executor.events import Finished, LimitKind, Log, Outcome, Output, RunEvent
from services.executor.sandbox import RunState
from services.executor.sandbox.wasi_files import MAX_DESCRIPTORS, Descriptors
from tests.unit.executor.conftest import Runner, wasm_file

SCRATCH = frozenset({"scratch"})
EMFILE, EBADF = 33, 8

# --- the table ---------------------------------------------------------------------------------------


def test_the_table_starts_with_stdio_and_the_preopens_and_refuses_past_its_limit() -> None:
    table = Descriptors.at_start(2, limit=8)
    assert table.open == {0, 1, 2, 3, 4} and table.stdio == {0: 0, 1: 1, 2: 2}
    for fd in (5, 6, 7):
        assert table.admit()
        table.opened(fd)
    assert not table.admit() and not table.admit() and table.refusals == 2
    table.closed(6)
    assert table.admit()


def test_renumbering_moves_stdio_and_closes_the_target() -> None:
    table = Descriptors.at_start(1)
    table.opened(4)
    table.renumbered(1, 4)  # stdout now at 4; the file that was at 4 is closed
    assert table.open == {0, 2, 3, 4} and table.stdio == {0: 0, 2: 2, 4: 1}
    table.opened(1)  # a file takes the free number 1: not stdout
    assert table.stdio == {0: 0, 2: 2, 4: 1}
    table.renumbered(1, 2)  # the file over stderr: stderr is gone
    assert table.open == {0, 2, 3, 4} and table.stdio == {0: 0, 4: 1}
    table.renumbered(4, 4)
    table.closed(4)
    assert table.open == {0, 2, 3} and table.stdio == {0: 0}


# --- in the sandbox --------------------------------------------------------------------------------------

# Opens "." of fd 3 until refused, then closes one and opens again; prints three little-endian u32s: the
# count opened, the errno of the refusal, the errno of the open after the close.
FLOOD = """
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) ".")
  (func $open_dot (result i32)
    (call $open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 2)
      (i64.const 0x204000) (i64.const 0) (i32.const 0) (i32.const 32)))
  (func (export "_start") (local $n i32) (local $e i32)
    (block $done (loop $more
      (local.set $e (call $open_dot))
      (br_if $done (local.get $e))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $done (i32.ge_u (local.get $n) (i32.const 60000)))
      (br $more)))
    (i32.store (i32.const 64) (local.get $n))
    (i32.store (i32.const 68) (local.get $e))
    (drop (call $close (i32.load (i32.const 32))))  ;; the last one opened
    (i32.store (i32.const 72) (call $open_dot))
    (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 12))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


def _run(
    runner: Runner, wat: str, tools: frozenset[str], mounts: tuple[tuple[str, str], ...]
) -> tuple[Finished, RunState]:
    """One run linked as the executor links a template with a preopen; deadline far off (a slow machine)."""
    prepared = runner.sandbox.link(
        runner.sandbox.compile(bytes(wasmtime.wat2wasm(wat)), "scratch" in tools), tools, "t@1.0.0", True
    )
    state = runner.state(prepared, b"", tools, fuel=10**9, timeout_ms=600_000)
    state.spec.mounts = mounts
    return runner.sandbox.run(prepared, state), state


@pytest.fixture
def data_dir(tmp_path: Path) -> tuple[tuple[str, str], ...]:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f.txt").write_bytes(b"read-only\n")
    return ((str(tmp_path / "data"), "/data"),)


@pytest.mark.parametrize(
    ("tools", "preopens"), [(SCRATCH, 3), (frozenset(), 1)], ids=["scratch-and-files", "template-files-only"]
)
def test_a_run_holds_at_most_its_bound_then_path_open_answers_emfile_and_a_close_makes_room(
    runner: Runner, data_dir: tuple[tuple[str, str], ...], tools: frozenset[str], preopens: int
) -> None:
    finished, state = _run(runner, FLOOD, tools, data_dir)
    assert finished.outcome is Outcome.SUCCEEDED, finished
    assert _flood_report(state) == (MAX_DESCRIPTORS - 3 - preopens, EMFILE, 0)
    said = f"the run holds {MAX_DESCRIPTORS} open descriptors, the most it may: path_open answers EMFILE until it"
    assert _logs(state, "warn") == [f"{said} closes some"]  # once, however often it was refused


def test_the_bound_is_the_sandbox_s(runner: Runner, data_dir: tuple[tuple[str, str], ...]) -> None:
    runner.sandbox.max_descriptors = 16
    try:
        finished, state = _run(runner, FLOOD, frozenset(), data_dir)
    finally:
        runner.sandbox.max_descriptors = MAX_DESCRIPTORS
    assert finished.outcome is Outcome.SUCCEEDED and _flood_report(state) == (16 - 4, EMFILE, 0), finished


def _events(state: RunState) -> list[RunEvent]:
    events: list[RunEvent] = vars(state)["events"]  # conftest's Runner.state keeps them on the state
    return events


def _output(state: RunState) -> bytes:
    return b"".join(e.data for e in _events(state) if isinstance(e, Output))


def _logs(state: RunState, level: str) -> list[str]:
    return [e.message for e in _events(state) if isinstance(e, Log) and e.level == level]


def _flood_report(state: RunState) -> tuple[int, ...]:
    return struct.unpack("<3I", _output(state))


# stdout renumbered to another descriptor is still the run's output; a file renumbered over stdout is written
# as a file (then read back through a new descriptor and echoed to stderr); a write to stdin is WASI's EBADF.
# fd 3 is the writable `/` with scratch. Exit code: the errno of writing to fd 0.
MOVES = """
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "moved stdout\\n")
  (data (i32.const 120) "into the file\\n")
  (data (i32.const 140) "out")
  (func $say (param $fd i32) (param $p i32) (param $n i32) (result i32)
    (i32.store (i32.const 0) (local.get $p)) (i32.store (i32.const 4) (local.get $n))
    (call $write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
  (func $open_out (param $oflags i32) (result i32)
    (if (call $open (i32.const 3) (i32.const 0) (i32.const 140) (i32.const 3) (local.get $oflags)
          (i64.const 0x1fffffff) (i64.const 0) (i32.const 0) (i32.const 16))
      (then (call $exit (i32.const 100))))
    (i32.load (i32.const 16)))
  (func (export "_start") (local $fd i32)
    (local.set $fd (call $open_out (i32.const 1)))         ;; O_CREAT: fd 4+ (a file)
    (drop (call $renumber (i32.const 1) (local.get $fd)))  ;; stdout now at $fd, the file closed
    (drop (call $say (local.get $fd) (i32.const 100) (i32.const 13)))
    (local.set $fd (call $open_out (i32.const 0)))         ;; the file again: takes the free number 1
    (if (i32.ne (local.get $fd) (i32.const 1)) (then (call $exit (i32.const 101))))
    (drop (call $say (i32.const 1) (i32.const 120) (i32.const 14)))  ;; into the file, not the output
    (local.set $fd (call $open_out (i32.const 0)))
    (i32.store (i32.const 0) (i32.const 200)) (i32.store (i32.const 4) (i32.const 64))
    (drop (call $read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
    (drop (call $say (i32.const 2) (i32.const 200) (i32.load (i32.const 8))))
    (call $exit (call $say (i32.const 0) (i32.const 100) (i32.const 1)))))
"""


def test_stdio_follows_its_descriptor_and_a_file_over_stdout_is_a_file(runner: Runner) -> None:
    finished, state = _run(runner, MOVES, SCRATCH, ())
    output = _output(state)
    logs = _logs(state, "stderr")
    assert output == b"moved stdout\n", (finished, output, logs)
    assert logs == ["into the file"], finished
    assert finished.exit_code == EBADF, finished


# Template files only: stdout moved over the /data preopen (fd 3) is still the run's output and stderr its
# log, with no WASI output callbacks behind them; fd 1 is then closed (WASI's EBADF, the exit code).
MOVED_OVER_DATA = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "moved over /data\\n")
  (data (i32.const 120) "a log line\\n")
  (func $say (param $fd i32) (param $p i32) (param $n i32) (result i32)
    (i32.store (i32.const 0) (local.get $p)) (i32.store (i32.const 4) (local.get $n))
    (call $write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
  (func (export "_start")
    (if (call $renumber (i32.const 1) (i32.const 3)) (then (call $exit (i32.const 100))))
    (drop (call $say (i32.const 3) (i32.const 100) (i32.const 17)))
    (drop (call $say (i32.const 2) (i32.const 120) (i32.const 11)))
    (call $exit (call $say (i32.const 1) (i32.const 100) (i32.const 1)))))
"""


def test_with_template_files_only_stdout_and_stderr_are_the_executor_s_wherever_they_are(
    runner: Runner, data_dir: tuple[tuple[str, str], ...]
) -> None:
    finished, state = _run(runner, MOVED_OVER_DATA, frozenset(), data_dir)
    assert (_output(state), _logs(state, "stderr")) == (b"moved over /data\n", ["a log line"]), finished
    assert finished.exit_code == EBADF, finished


def test_with_template_files_only_the_output_cap_stops_the_run_at_once(
    runner: Runner, data_dir: tuple[tuple[str, str], ...]
) -> None:
    prepared = runner.sandbox.link(runner.sandbox.compile(wasm_file("hostile-stdout-flood")), frozenset(), "t@1", True)
    state = runner.state(prepared, b"", frozenset(), max_output_bytes=1024, timeout_ms=600_000)
    state.spec.mounts = data_dir
    finished = runner.sandbox.run(prepared, state)
    assert (finished.outcome, finished.limit, finished.output_bytes) == (
        Outcome.RESOURCE_EXHAUSTED,
        LimitKind.OUTPUT,
        1024,
    ), finished
