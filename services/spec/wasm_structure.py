"""A cheap structural reader of a WebAssembly binary, and the policy's bounds on what it reads.

Compiling is where an embedder spends unbounded CPU and memory on hostile input: a 240 KB module of
60,000 empty functions compiles for seconds. What drives compile cost can be read without compiling, in
one linear pass over section headers and vector counts (no instruction is decoded): the number of
functions, imports, globals, tables, data and element segments, the locals and body size of every
function and the total code size. The registry applies the bounds at publish (INVALID_ARGUMENT) and the
executor again before compiling (FAILED_PRECONDITION), each naming the rule (`module.<bound>`); what
this reader cannot see (instruction nesting, pathological control flow) is bounded by the compile
worker's CPU and memory limits.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields

WASM_MAGIC = b"\x00asm\x01\x00\x00\x00"

SECTION_CUSTOM, SECTION_TYPE, SECTION_IMPORT, SECTION_FUNCTION, SECTION_TABLE = 0, 1, 2, 3, 4
SECTION_MEMORY, SECTION_GLOBAL, SECTION_EXPORT, SECTION_START, SECTION_ELEMENT = 5, 6, 7, 8, 9
SECTION_CODE, SECTION_DATA = 10, 11


class MalformedModule(ValueError):
    """The bytes are not a well-formed module as far as the reader looks (the message is short)."""


def leb_u32(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 u32 at pos: (value, position after it)."""
    result = shift = 0
    for _ in range(5):
        if pos >= len(data):
            raise MalformedModule("module is truncated (bad LEB128)")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise MalformedModule("module has a malformed LEB128 number")


def section_spans(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(section id, header start, body start, body end) for each section, in order."""
    if not data.startswith(WASM_MAGIC):
        raise MalformedModule("module is not a WebAssembly 1.0 binary (bad magic or version)")
    pos = len(WASM_MAGIC)
    while pos < len(data):
        section_id = data[pos]
        size, body = leb_u32(data, pos + 1)
        if body + size > len(data):
            raise MalformedModule(f"module section {section_id} runs past the end of the binary")
        yield section_id, pos, body, body + size
        pos = body + size


def sections(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(section id, body start, body end) for each section, in order."""
    for section_id, _, body, end in section_spans(data):
        yield section_id, body, end


@dataclass(frozen=True)
class Structure:
    """What drives compile cost, as counted in the binary."""

    size: int = 0
    imports: int = 0
    functions: int = 0  # defined (not imported) functions
    globals: int = 0
    tables: int = 0
    memories: int = 0
    types: int = 0
    exports: int = 0
    data_segments: int = 0
    element_segments: int = 0
    code_bytes: int = 0  # the code section's size
    max_function_bytes: int = 0  # the largest function body
    max_function_locals: int = 0  # the most locals one function declares


_COUNTED = {
    SECTION_TYPE: "types",
    SECTION_IMPORT: "imports",
    SECTION_FUNCTION: "functions",
    SECTION_TABLE: "tables",
    SECTION_MEMORY: "memories",
    SECTION_GLOBAL: "globals",
    SECTION_EXPORT: "exports",
    SECTION_ELEMENT: "element_segments",
    SECTION_DATA: "data_segments",
}


def read_structure(data: bytes) -> Structure:
    """One pass over the sections; raises MalformedModule when a header or count does not parse."""
    counts: dict[str, int] = {"size": len(data)}
    for section_id, body, end in sections(data):
        name = _COUNTED.get(section_id)
        if name is not None:
            counts[name] = leb_u32(data, body)[0]
        elif section_id == SECTION_CODE:
            counts["code_bytes"] = end - body
            biggest, most_locals = _scan_code(data, body, end)
            counts["max_function_bytes"], counts["max_function_locals"] = biggest, most_locals
    return Structure(**counts)


def _scan_code(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The largest body and the most locals of any function: sizes and local declarations only."""
    count, pos = leb_u32(data, pos)
    biggest = most_locals = 0
    for _ in range(count):
        size, body = leb_u32(data, pos)
        if body + size > end:
            raise MalformedModule("a function body runs past the end of the code section")
        biggest = max(biggest, size)
        groups, at = leb_u32(data, body)
        locals_ = 0
        for _ in range(groups):
            n, at = leb_u32(data, at)
            locals_ += n
            at += 1  # the value type (one byte for every type a function local may have in MVP + SIMD)
            if at > body + size:
                raise MalformedModule("a function's local declarations run past its body")
        most_locals = max(most_locals, locals_)
        pos = body + size
    return biggest, most_locals


@dataclass(frozen=True)
class ModuleBounds:
    """The policy's `module:` section: the most of each thing a module may have (see default_policy.yaml)."""

    max_bytes: int = 8 * 1024 * 1024
    max_imports: int = 64
    max_functions: int = 20_000
    max_globals: int = 1_000
    max_tables: int = 4
    max_types: int = 5_000
    max_exports: int = 1_000
    max_data_segments: int = 100_000  # Go puts every static datum in its own segment (kv-counter: 37,017)
    max_element_segments: int = 1_000
    max_code_bytes: int = 8 * 1024 * 1024
    max_function_bytes: int = 1024 * 1024
    max_function_locals: int = 10_000

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> ModuleBounds:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown module bounds {sorted(unknown)}")
        return cls(**{k: int(v) for k, v in data.items()})  # type: ignore[call-overload]

    def violation(self, structure: Structure) -> str | None:
        """The first bound the structure breaks, as a message naming the rule; None when within all."""
        checks = (
            ("max_bytes", structure.size, "bytes"),
            ("max_imports", structure.imports, "imports"),
            ("max_functions", structure.functions, "functions"),
            ("max_globals", structure.globals, "globals"),
            ("max_tables", structure.tables, "tables"),
            ("max_types", structure.types, "types"),
            ("max_exports", structure.exports, "exports"),
            ("max_data_segments", structure.data_segments, "data segments"),
            ("max_element_segments", structure.element_segments, "element segments"),
            ("max_code_bytes", structure.code_bytes, "bytes of code"),
            ("max_function_bytes", structure.max_function_bytes, "bytes in one function body"),
            ("max_function_locals", structure.max_function_locals, "locals in one function"),
        )
        for rule, value, what in checks:
            limit = getattr(self, rule)
            if value > limit:
                return f"module has {value} {what}; the policy allows at most {limit} (rule module.{rule})"
        return None
