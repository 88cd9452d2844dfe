"""The structural reader counts what drives compile cost, and the policy names the bound a module breaks."""

from __future__ import annotations

import pytest
import wasmtime

from services.templates.policy import Policy
from services.templates.wasm_structure import MalformedModule, ModuleBounds, Structure, read_structure

WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global (mut i32) (i32.const 0)) (global i64 (i64.const 1))
  (table 2 funcref) (elem (i32.const 0) $a $b)
  (data (i32.const 0) "x") (data (i32.const 8) "y") (data (i32.const 16) "z")
  (func $a (local i32 i64 i64))
  (func $b (local f32) (nop) (nop) (nop))
  (func (export "_start")))"""


def test_counts() -> None:
    wasm = bytes(wasmtime.wat2wasm(WAT))
    s = read_structure(wasm)
    assert (s.size, s.imports, s.functions, s.globals, s.tables, s.memories, s.exports) == (len(wasm), 1, 3, 2, 1, 1, 2)
    assert (s.data_segments, s.element_segments, s.max_function_locals) == (3, 1, 3)
    assert 0 < s.max_function_bytes < s.code_bytes < len(wasm)


@pytest.mark.parametrize(
    ("bound", "value", "rule"),
    [
        ("max_functions", 2, "module.max_functions"),
        ("max_globals", 1, "module.max_globals"),
        ("max_data_segments", 2, "module.max_data_segments"),
        ("max_element_segments", 0, "module.max_element_segments"),
        ("max_function_locals", 2, "module.max_function_locals"),
        ("max_function_bytes", 3, "module.max_function_bytes"),
        ("max_code_bytes", 5, "module.max_code_bytes"),
        ("max_imports", 0, "module.max_imports"),
    ],
)
def test_each_bound_is_named(bound: str, value: int, rule: str) -> None:
    message = ModuleBounds(**{bound: value}).violation(read_structure(bytes(wasmtime.wat2wasm(WAT))))
    assert message is not None and message.endswith(f"(rule {rule})"), message


def test_within_bounds() -> None:
    assert ModuleBounds().violation(Structure(size=1)) is None


@pytest.mark.parametrize(
    "wasm",
    [
        b"",
        b"\x00asm\x02\x00\x00\x00",
        b"\x00asm\x01\x00\x00\x00\x03\xff\xff",
        b"\x00asm\x01\x00\x00\x00\x0a\x05\x01\x10",
    ],
)
def test_malformed(wasm: bytes) -> None:
    with pytest.raises(MalformedModule):
        read_structure(wasm)


def test_policy_reads_its_module_section() -> None:
    policy = Policy.load()
    assert policy.module_bounds.max_functions == 20_000
    assert policy.module_violation(b"not wasm") is not None and "module.well_formed" in policy.module_violation(b"x")  # type: ignore[operator]
    with pytest.raises(ValueError, match="unknown module bounds"):
        ModuleBounds.from_mapping({"max_fun": 1})


NESTED = """(module
  (memory 1)
  (func (param i32) (result i64)
    (block (result i64)
      (loop
        (if (local.get 0)
          (then (block (br_table 0 1 2 (local.get 0))))
          (else (drop (f64.const 1.5)) (drop (f32.const 2)) (i32.store offset=8 (i32.const 0) (i32.const -1))))
        (memory.fill (i32.const 0) (i32.const 0) (i32.const 0))
        (drop (i64.load align=4 (i32.const 0)))
        (br_if 0 (i32.eqz (local.get 0))))
      (i64.const -123456789012)))
  (func (block (block (block (block (block (nop)))))))
  (func (drop (v128.const i32x4 1 2 3 4)) (drop (i8x16.extract_lane_s 3 (v128.const i64x2 0 0)))))"""


def test_nesting_is_the_deepest_control_structure_of_any_function() -> None:
    assert read_structure(bytes(wasmtime.wat2wasm(NESTED))).max_nesting == 5
    assert read_structure(bytes(wasmtime.wat2wasm(NESTED)), nesting=False).max_nesting == -1
    message = ModuleBounds(max_nesting=4).violation(read_structure(bytes(wasmtime.wat2wasm(NESTED))))
    assert (
        message
        == "module has 5 levels of block nesting in one function; the policy allows at most 4 (rule module.max_nesting)"
    )


def test_an_instruction_the_reader_does_not_decode_leaves_nesting_unread() -> None:
    wasm = bytearray(wasmtime.wat2wasm("(module (func (block (nop))))"))
    wasm[wasm.rindex(b"\x01\x0b")] = 0xFB  # the nop becomes a GC-prefixed instruction
    structure = read_structure(bytes(wasm))
    assert structure.max_nesting == -1 and ModuleBounds(max_nesting=0).violation(structure) is None
