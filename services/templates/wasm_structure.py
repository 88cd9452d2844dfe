"""A cheap structural reader of a WebAssembly binary, and the policy's bounds on what it reads.

Compiling is where an embedder spends unbounded CPU and memory on hostile input: a 240 KB module of
60,000 empty functions compiles for seconds. What drives compile cost can be read without compiling, in
one linear pass over section headers and vector counts (no instruction is decoded): the number of
functions, imports, globals, tables, data and element segments, the locals and body size of every
function, the total code size, and the deepest block nesting (this one decodes each instruction's
immediates, nothing more; a function using an instruction the reader does not know leaves the nesting
unread). The registry applies the bounds at publish (INVALID_ARGUMENT) and the
executor again before compiling (FAILED_PRECONDITION), each naming the rule (`module.<bound>`); what
this reader cannot see (pathological control flow of other kinds, nesting it could not decode) is
bounded by the compile worker's CPU and memory limits.
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


def leb_encode(value: int) -> bytes:
    """`value` (unsigned) as LEB128, the inverse of leb_u32."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_section(section_id: int, body: bytes) -> bytes:
    """A section: its id, its body's size, its body."""
    return bytes([section_id]) + leb_encode(len(body)) + body


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
    max_nesting: int = -1  # the deepest block/loop/if nesting; -1 when not read or not decodable


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


def read_structure(data: bytes, nesting: bool = True) -> Structure:
    """One pass over the sections; raises MalformedModule when a header or count does not parse.
    `nesting` also decodes every instruction (about 1 s per MiB of code in CPython) for the nesting."""
    counts: dict[str, int] = {"size": len(data)}
    for section_id, body, end in sections(data):
        name = _COUNTED.get(section_id)
        if name is not None:
            counts[name] = leb_u32(data, body)[0]
        elif section_id == SECTION_CODE:
            counts["code_bytes"] = end - body
            biggest, most_locals, deepest = _scan_code(data, body, end, nesting)
            counts["max_function_bytes"], counts["max_function_locals"] = biggest, most_locals
            counts["max_nesting"] = deepest
    return Structure(**counts)


def _scan_code(data: bytes, pos: int, end: int, nesting: bool) -> tuple[int, int, int]:
    """The largest body, the most locals and (when asked) the deepest nesting of any function."""
    count, pos = leb_u32(data, pos)
    biggest = most_locals = 0
    deepest = 0 if nesting else -1
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
        if deepest >= 0:
            depth = function_nesting(data, at, body + size)
            deepest = -1 if depth is None else max(deepest, depth)
        pos = body + size
    return biggest, most_locals, deepest


# --- instruction nesting ------------------------------------------------------------------------

_NO_IMMEDIATE = frozenset([0x00, 0x01, 0x05, 0x0F, 0x19, 0x1A, 0x1B, 0xD1, 0xD3, 0xD5, *range(0x45, 0xC5)])
_ONE_INDEX = frozenset([0x07, 0x08, 0x09, 0x0C, 0x0D, 0x10, 0x12, 0x14, 0x15, 0x18, 0xD2, 0xD4, 0xD6])
_ONE_INDEX |= frozenset(range(0x20, 0x27)) | {0x3F, 0x40}
_TWO_INDICES = frozenset([0x11, 0x13])
_BLOCKS = frozenset([0x02, 0x03, 0x04, 0x06])
_MEMARG = frozenset(range(0x28, 0x3F))
_FC_INDICES = {0: 0, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 2, 9: 1, 10: 2, 11: 1, 12: 2, 13: 1, 14: 2}
_FC_INDICES |= {15: 1, 16: 1, 17: 1}


def _skip_leb(data: bytes, pos: int) -> int:
    while data[pos] & 0x80:
        pos += 1
    return pos + 1


def _skip_memarg(data: bytes, pos: int) -> int:
    align, pos = leb_u32(data, pos)
    if align & 0x40:  # multi-memory: a memory index follows
        pos = _skip_leb(data, pos)
    return _skip_leb(data, pos)


def _simd(data: bytes, pos: int) -> int:
    op, pos = leb_u32(data, pos)
    if op <= 11 or op in (92, 93):
        return _skip_memarg(data, pos)
    if op in (12, 13):  # v128.const, i8x16.shuffle
        return pos + 16
    if 21 <= op <= 34:  # lane access
        return pos + 1
    if 84 <= op <= 91:  # load/store lane: memarg + lane
        return _skip_memarg(data, pos) + 1
    return pos


def function_nesting(data: bytes, pos: int, end: int) -> int | None:
    """The deepest block/loop/if/try nesting in one function's instructions [pos, end), or None when it
    uses an instruction this reader does not decode (GC, stringref...): the caller then cannot rely on it."""
    depth = deepest = 0
    try:
        while pos < end:
            op = data[pos]
            pos += 1
            if op in _NO_IMMEDIATE:
                continue
            if op in _ONE_INDEX:
                pos = _skip_leb(data, pos)
            elif op == 0x0B:
                depth -= 1
            elif op in _BLOCKS:
                depth += 1
                deepest = max(deepest, depth)
                pos = pos + 1 if data[pos] in (0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F) else _skip_leb(data, pos)
            elif op in _MEMARG:
                pos = _skip_memarg(data, pos)
            elif op == 0x41 or op == 0x42:
                pos = _skip_leb(data, pos)
            elif op == 0x43:
                pos += 4
            elif op == 0x44:
                pos += 8
            elif op in _TWO_INDICES:
                pos = _skip_leb(data, _skip_leb(data, pos))
            elif op == 0x0E:  # br_table: a vector of labels, then the default
                count, pos = leb_u32(data, pos)
                for _ in range(count + 1):
                    pos = _skip_leb(data, pos)
            elif op == 0x1C:  # select with types
                count, pos = leb_u32(data, pos)
                pos += count
            elif op == 0xD0:  # ref.null heap type
                pos = _skip_leb(data, pos)
            elif op == 0xFC:
                sub, pos = leb_u32(data, pos)
                indices = _FC_INDICES.get(sub)
                if indices is None:
                    return None
                for _ in range(indices):
                    pos = _skip_leb(data, pos)
            elif op == 0xFD:
                pos = _simd(data, pos)
            elif op == 0xFE:  # threads: atomic.fence has one byte, the rest a memarg
                sub, pos = leb_u32(data, pos)
                pos = pos + 1 if sub == 0x03 else _skip_memarg(data, pos)
            else:
                return None
    except (IndexError, MalformedModule):
        return None
    return deepest


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
    # nested blocks/loops/ifs in one function: Go's dispatch nests ~550 deep (kv-counter); 10,000 nested
    # loops compile for ~0.7 s and 50,000 for ~5 s (nested blocks stay cheap)
    max_nesting: int = 5_000

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> ModuleBounds:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown module bounds {sorted(unknown)}")
        # int() of whatever the policy file holds: a value that is no number raises, and the policy loader
        # reports it; the stubs take no `object` there.
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
            ("max_nesting", structure.max_nesting, "levels of block nesting in one function"),
        )
        for rule, value, what in checks:
            limit = getattr(self, rule)
            if value > limit:
                return f"module has {value} {what}; the policy allows at most {limit} (rule module.{rule})"
        return None
