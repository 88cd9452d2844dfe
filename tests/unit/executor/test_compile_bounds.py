"""Compiling is bounded: structural bounds before any compile work, a worker process for anything but
small modules (abandoned past its budget), and the start function detached so that it runs after
instantiation under the run's limits."""

from __future__ import annotations

import pytest
import wasmtime

from services.common.errors import FailedPrecondition
from services.executor.events import LimitKind, Outcome, Started
from services.executor.sandbox import EngineSettings, Sandbox
from services.executor.sandbox.compile import INPROCESS_MAX_FUNCTIONS, CompileBudget
from services.executor.sandbox.start import START_EXPORT, detach_start
from services.templates.wasm_structure import MalformedModule, ModuleBounds, read_structure
from tests.unit.executor.conftest import Runner, wasm_file


def many_functions(count: int) -> str:
    return '(module (memory (export "memory") 1) (func (export "_start") (call 1))' + "(func)" * count + ")"


def test_a_module_past_a_structural_bound_is_refused_before_compiling(sandbox: Sandbox) -> None:
    with pytest.raises(FailedPrecondition) as refused:
        sandbox.compile(wasm_file("hostile-many-functions"))
    assert refused.value.message == (
        "module has 60000 functions; the policy allows at most 20000 (rule module.max_functions)"
    )


def test_the_sandbox_applies_the_bounds_it_is_given() -> None:
    box = Sandbox(EngineSettings(), ModuleBounds(max_functions=3))
    try:
        with pytest.raises(FailedPrecondition, match=r"rule module\.max_functions"):
            box.compile(bytes(wasmtime.wat2wasm(many_functions(3))))
    finally:
        box.close()


def test_a_larger_module_compiles_in_the_worker_and_runs(runner: Runner) -> None:
    out = runner.run(many_functions(INPROCESS_MAX_FUNCTIONS + 1))
    assert out.finished.outcome is Outcome.SUCCEEDED, out.finished


def test_a_compile_past_its_budget_is_abandoned() -> None:
    box = Sandbox(EngineSettings(), budget=CompileBudget(seconds=0.001))  # shorter than any process start
    try:
        with pytest.raises(FailedPrecondition) as abandoned:
            box.compile(bytes(wasmtime.wat2wasm(many_functions(INPROCESS_MAX_FUNCTIONS + 1))))
        assert "abandoned (rule compile.seconds)" in abandoned.value.message
    finally:
        box.close()


def test_a_module_that_does_not_compile_names_the_error_from_the_worker(sandbox: Sandbox) -> None:
    wasm = bytearray(wasmtime.wat2wasm(many_functions(INPROCESS_MAX_FUNCTIONS + 1)))
    wasm[-1] = 0xFF  # the last function body ends in an unknown opcode instead of `end`
    with pytest.raises(FailedPrecondition, match="module does not compile"):
        sandbox.compile(bytes(wasm))


def test_detach_start_exports_the_start_function() -> None:
    for wat in (
        '(module (memory (export "memory") 1) (func $s) (start $s) (func (export "_start")))',
        "(module (func $s) (start $s))",  # no export section of its own
    ):
        detached, name = detach_start(bytes(wasmtime.wat2wasm(wat)))
        assert name == START_EXPORT
        module = wasmtime.Module(wasmtime.Engine(), detached)
        assert START_EXPORT in {e.name for e in module.exports}
        assert read_structure(detached).exports == read_structure(bytes(wasmtime.wat2wasm(wat))).exports + 1
    plain = bytes(wasmtime.wat2wasm('(module (func (export "_start")))'))
    assert detach_start(plain) == (plain, None)
    with pytest.raises(MalformedModule, match="reserves"):
        detach_start(bytes(wasmtime.wat2wasm(f'(module (func $s (export "{START_EXPORT}")) (start $s))')))


def test_memory_bomb_in_the_start_function_is_the_memory_limit(runner: Runner) -> None:
    out = runner.run(wasm_file("hostile-start-memory-bomb"), memory_bytes=4 << 20)
    assert (out.finished.outcome, out.finished.limit) == (Outcome.RESOURCE_EXHAUSTED, LimitKind.MEMORY), out.finished
    assert out.finished.peak_memory_bytes == 4 << 20
    assert not any(isinstance(e, Started) for e in out.events)


def test_the_start_function_runs_before_start_and_sees_the_same_store(runner: Runner) -> None:
    wat = """(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "AB")
      (func $init (i32.store8 (i32.const 100) (i32.const 90)))
      (start $init)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 2))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""
    out = runner.run(wat)
    assert out.finished.outcome is Outcome.SUCCEEDED and out.output == b"ZB"
