"""The scratch cap's fast path (sandbox/scratch_rewrite.py, fs_calls.FastGuard): a module compiled for a
tool set with `scratch` has its fd_write/fd_pwrite imported from the run's stub, which calls the run's wasm
guard, which charges writes against a prepaid allowance without a host call. The rewrite's edits, the modules it
leaves alone, the refusals, and that a routed run ends exactly as the host path's does at the cap, at the
memory limit, and with stdout moved — while nearly all of its writes never reach the host."""

from __future__ import annotations

import pytest
import wasmtime

from services.common.errors import FailedPrecondition
from services.executor.events import Finished, LimitKind, Outcome
from services.executor.sandbox import Prepared, RunState, Sandbox
from services.executor.sandbox.config import ScratchSettings
from services.executor.sandbox.scratch import BLOCK, ScratchBudget
from services.executor.sandbox.scratch_rewrite import RESERVED_MODULE, WASI_MODULE, reserved_import, route_writes
from tests.unit.executor.conftest import Runner, wasm_file

SCRATCH = frozenset({"scratch"})
ENOSPC = 51

# Creates /blob, writes WRITES blocks of 4 KiB (0 = until an error), prints how many succeeded (4 bytes,
# little-endian) and exits with the errno that stopped it (0 when none did). fd 3 is the run's `/`.
WRITER = """(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "blob")
  (func (export "_start") (local $fd i32) (local $n i32) (local $errno i32)
    (if (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 9)
          (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 16))
      (then (call $exit (i32.const 100))))
    (local.set $fd (i32.load (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 4096)) (i32.store (i32.const 4) (i32.const 4096))
    (block $done (loop $again
      (br_if $done (i32.and (i32.ne (i32.const WRITES) (i32.const 0)) (i32.ge_u (local.get $n) (i32.const WRITES))))
      (local.set $errno (call $write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 24)))
      (br_if $done (local.get $errno))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $again)))
    (i32.store (i32.const 40) (local.get $n))
    (i32.store (i32.const 0) (i32.const 40)) (i32.store (i32.const 4) (i32.const 4))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 24)))
    (call $exit (local.get $errno))))
"""


def writer(writes: int) -> bytes:
    return bytes(wasmtime.wat2wasm(WRITER.replace("WRITES", str(writes))))


def _imports(wasm: bytes) -> list[tuple[str, str]]:
    module = wasmtime.Module(wasmtime.Engine(), wasm)
    return [(imp.module, imp.name or "") for imp in module.imports]


# --- the rewrite ----------------------------------------------------------------------------------------


def test_the_rewrite_renames_the_write_imports_and_keeps_everything_else() -> None:
    wasm = writer(3)
    routed = route_writes(wasm)
    assert routed != wasm
    assert _imports(routed) == [(WASI_MODULE, "path_open"), (RESERVED_MODULE, "fd_write"), (WASI_MODULE, "proc_exit")]
    module = wasmtime.Module(wasmtime.Engine(), routed)  # validates
    # The memory stays the guest's own (an imported one makes every load and store slower).
    assert [(exp.name, type(exp.type).__name__) for exp in module.exports] == [
        ("memory", "MemoryType"),
        ("_start", "FuncType"),
    ]


def test_the_rewrite_keeps_the_function_indices() -> None:
    # Calls by index across the imports, data in memory: the routed module still computes the same.
    wat = """(module
      (import "wasi_snapshot_preview1" "fd_pwrite" (func $pw (param i32 i32 i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
      (memory (export "memory") 2 5)
      (data (i32.const 8) "abc")
      (func $three (result i32) (i32.load8_u (i32.const 10)))
      (func (export "f") (result i32) (call $three)))"""
    routed = route_writes(bytes(wasmtime.wat2wasm(wat)))
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, routed)
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
    ty = wasmtime.FuncType([i32, i32, i32, i64, i32], [i32])
    linker.define(store, RESERVED_MODULE, "fd_pwrite", wasmtime.Func(store, ty, lambda *_: 0))
    f = linker.instantiate(store, module).exports(store)["f"]
    assert isinstance(f, wasmtime.Func)
    assert f(store) == ord("c")


@pytest.mark.parametrize(
    "wat",
    [
        # no fd_write or fd_pwrite
        '(module (import "wasi_snapshot_preview1" "fd_read" (func (param i32 i32 i32 i32) (result i32)))'
        ' (memory (export "memory") 1))',
        # no memory of its own
        '(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))))',
        # an imported memory
        '(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'
        ' (import "env" "memory" (memory 1)))',
        # two memories
        '(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'
        ' (memory (export "memory") 1) (memory 1))',
        # shared
        '(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'
        ' (memory (export "memory") 1 1 shared))',
        # 64-bit
        '(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'
        ' (memory (export "memory") i64 1))',
        # an import of a typed reference (more than one byte), which the import reader does not follow
        '(module (type $t (func)) (import "env" "g" (global (ref null $t)))'
        ' (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'
        ' (memory (export "memory") 1))',
    ],
    ids=["no-writes", "no-memory", "imported-memory", "two-memories", "shared", "memory64", "typed-reference"],
)
def test_modules_it_cannot_route_are_left_byte_identical(wat: str) -> None:
    wasm = bytes(wasmtime.wat2wasm(wat))
    assert route_writes(wasm) is wasm


def test_the_examples_that_write_are_routed_and_the_rest_untouched() -> None:
    assert route_writes(wasm_file("hostile-scratch-big-file")) != wasm_file("hostile-scratch-big-file")
    untouched = wasm_file("hostile-big-memory")  # imports no fd_write
    assert route_writes(untouched) is untouched


# --- compile and link -----------------------------------------------------------------------------------


def test_a_guest_importing_the_reserved_module_is_refused(sandbox: Sandbox) -> None:
    wat = f"""(module (import "{RESERVED_MODULE}" "memory" (memory 1)) (func (export "_start")))"""
    for scratch in (False, True):
        with pytest.raises(FailedPrecondition, match="reserves"):
            sandbox.compile(bytes(wasmtime.wat2wasm(wat)), scratch)


@pytest.mark.parametrize(
    "before",
    [
        '(import "env" "g" (global (ref null $t)))',  # typed references: more than one byte of type
        '(import "env" "g" (global (mut (ref $t)) ))',
        '(import "env" "tb" (table 1 (ref null $t)))',
    ],
)
def test_the_reserved_module_is_found_behind_imports_the_reader_does_not_follow(before: str) -> None:
    # Read one byte too few and the entries after would be misread: the reserved import must still be seen.
    wat = f"""(module (type $t (func)) {before}
      (import "{RESERVED_MODULE}" "fd_write" (func (param i32 i32 i32 i32) (result i32))))"""
    assert reserved_import(bytes(wasmtime.wat2wasm(wat)))


def test_a_module_compiled_for_scratch_links_only_for_scratch(sandbox: Sandbox) -> None:
    module = sandbox.compile(writer(1), scratch=True)
    assert sandbox.link(module, SCRATCH, "t@1").routed
    with pytest.raises(FailedPrecondition, match="compiled for a tool set with scratch"):
        sandbox.link(module, frozenset(), "t@1", True)


def test_a_routed_module_that_does_not_link_is_refused_at_link(sandbox: Sandbox) -> None:
    wat = WRITER.replace("WRITES", "1").replace(
        '(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))',
        '(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))\n'
        '  (import "wasi_snapshot_preview1" "no_such_call" (func))',
    )
    module = sandbox.compile(bytes(wasmtime.wat2wasm(wat)), scratch=True)
    with pytest.raises(FailedPrecondition, match="no_such_call"):
        sandbox.link(module, SCRATCH, "t@1")


# --- runs -----------------------------------------------------------------------------------------------


def _run(runner: Runner, prepared: Prepared, **lim: int) -> tuple[Finished, RunState]:
    state = runner.state(prepared, b"", SCRATCH, **lim)
    return runner.sandbox.run(prepared, state), state


def _printed(state: RunState) -> int:
    data = b"".join(e.data for e in state.events if type(e).__name__ == "Output")  # type: ignore[attr-defined]
    return int.from_bytes(data, "little")


def test_nearly_every_write_stays_in_wasm(runner: Runner) -> None:
    writes = 2000  # 8 MiB written, 24 MiB charged: the allowance runs out and is refilled along the way
    prepared = runner.prepare(writer(writes), SCRATCH)
    assert prepared.routed and prepared.pre is None
    finished, state = _run(runner, prepared)
    assert (finished.outcome, _printed(state)) == (Outcome.SUCCEEDED, writes), finished
    assert state.files is not None and state.files.fast is not None
    # One host call per prepaid MiB (85 writes of 12 KiB charged) at most, plus the measures past the cap.
    assert 0 < state.files.fast.slow_calls <= writes // 40, state.files.fast.slow_calls


@pytest.fixture
def small_cap(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> Runner:
    # A cap well under one prepaid chunk, so the allowance is all the room there is and runs out often. (The
    # session's sandbox with another cap: a second Engine in one process trips a wasmtime assertion on the
    # host function types the first one registered, wasi.py's module-level FuncTypes.)
    monkeypatch.setattr(runner.sandbox, "scratch", ScratchSettings(max_bytes=600 * 1024))
    return runner


def test_at_the_cap_a_routed_run_ends_exactly_as_the_host_path_does(small_cap: Runner) -> None:
    sandbox = small_cap.sandbox
    host = sandbox.link(sandbox.compile(writer(0)), SCRATCH, "t@1")
    routed = sandbox.link(sandbox.compile(writer(0), scratch=True), SCRATCH, "t@1")
    assert not host.routed and routed.routed
    ends = []
    for prepared in (host, routed):
        finished, state = _run(small_cap, prepared)
        assert state.scratch is not None
        assert state.scratch.used_bytes <= 600 * 1024  # charges and unspent allowance together
        ends.append((finished.outcome, finished.limit, finished.exit_code, _printed(state)))
    assert ends[0] == ends[1], ends
    outcome, limit, errno, written = ends[1]
    assert (outcome, limit, errno) == (Outcome.RESOURCE_EXHAUSTED, LimitKind.SCRATCH, ENOSPC)
    assert 100 < written < 150, written  # ~600 KiB of 4 KiB blocks, less the directories'
    # One write fewer fits: the same run stopping just under the cap succeeds, with the allowance in play.
    just_under = sandbox.link(sandbox.compile(writer(written), scratch=True), SCRATCH, "t@1")
    finished, state = _run(small_cap, just_under)
    assert (finished.outcome, _printed(state)) == (Outcome.SUCCEEDED, written), finished
    assert state.files is not None and state.files.fast is not None and state.files.fast.slow_calls > 0


def test_a_routed_run_keeps_the_memory_limit(runner: Runner) -> None:
    bomb = wasm_file("hostile-memory-bomb")
    assert route_writes(bomb) != bomb
    out = runner.run(bomb, tools=SCRATCH, memory_bytes=4 << 20)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.RESOURCE_EXHAUSTED, LimitKind.MEMORY)
    assert out.finished.peak_memory_bytes <= 4 << 20
    # A minimum past the limit fails before the guest starts, as the memory limit.
    big = WRITER.replace("WRITES", "1").replace('(memory (export "memory") 1)', '(memory (export "memory") 200)')
    out = runner.run(big, tools=SCRATCH, memory_bytes=4 << 20)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.RESOURCE_EXHAUSTED, LimitKind.MEMORY), out.finished


def test_a_refused_memory_grow_answers_minus_one_in_a_routed_run(runner: Runner) -> None:
    wat = """(module
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (if (i32.ne (memory.grow (i32.const 1000)) (i32.const -1)) (then (call $exit (i32.const 1))))
        (if (i32.ne (memory.grow (i32.const 1)) (i32.const 1)) (then (call $exit (i32.const 2))))
        (call $exit (i32.const 7))))"""
    prepared = runner.prepare(wat, SCRATCH)
    assert prepared.routed
    out = runner.run(wat, tools=SCRATCH, memory_bytes=4 << 20)
    assert (out.finished.outcome, out.finished.exit_code) == (Outcome.FAILED, 7), out.finished
    assert out.finished.peak_memory_bytes == 2 * 65536


def test_an_unspent_allowance_is_taken_back_before_the_disk_is_measured() -> None:
    left = [50 * 1024]  # what the guard has not spent of its allowance

    def take() -> int:
        unspent, left[0] = left[0], 0
        return unspent

    # A root that does not exist: measuring it would raise, so a charge that fits once the allowance is
    # back must not measure.
    budget = ScratchBudget("/nonexistent/af-run", max_bytes=100 * 1024, take_prepaid=take)
    assert budget.prepay(1 << 20) == 100 * 1024 - 2 * BLOCK  # never more than fits
    assert budget.admit(20 * 1024, 1)
    assert (budget.used_bytes, left[0]) == (100 * 1024 - 30 * 1024, 0)
    assert budget.prepay(1 << 20) == 30 * 1024
