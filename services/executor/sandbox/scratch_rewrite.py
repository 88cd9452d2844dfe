"""A scratch module's file writes routed through a per-run wasm guard (the scratch cap's fast path).

The cap (scratch.py) charges every `fd_write`/`fd_pwrite` an upper bound before wasmtime's WASI does it.
Done in a host function, each write costs a nested host -> wasm -> WASI call, ~6-7 us over the guest
calling WASI itself (perf/sandbox/REPORT.md); a workload of 4 KiB writes paid ~+15-18 % for it. Keeping
the check in wasm needs the guest's writes to reach a wasm function of ours that can call WASI directly
and that shares the guest's memory (WASI finds memory through its caller's `memory` export).

Rewriting the guest's code to redirect its calls would need a full instruction decoder and function
renumbering. One section edit does it instead, before the module is compiled (compile.py): its imports
`wasi_snapshot_preview1.fd_write`/`fd_pwrite` are renamed to RESERVED_MODULE, same field names and types
(a string edit of the import section: no index changes). Per run the executor links them to a tiny stub
instance that calls through a two-entry table, instantiates the guest, then the guard over the guest's
own exported memory, and puts the guard's two functions in the stub's table (engine.py,
fs_calls.FastGuard). The guest keeps its memory: an imported memory was the first design, and it made
the guest's own loads and stores ~20 % slower (prime-sieve, 50 -> 62 ms; wasmtime reaches an imported
memory's base through one more pointer), which a compute-heavy scratch agent would pay everywhere.
The guard imports that memory, so the rewrite applies only to a module defining exactly one 32-bit,
unshared memory and importing none; any other module is left as it is and takes the host path, which
charges every write through a host function.

A guest module importing RESERVED_MODULE itself is refused before compiling (reserved_import), so a
compiled module importing it was always rewritten here, and nothing a guest names can resolve to
another run's objects.
"""

from __future__ import annotations

from services.templates.wasm_structure import (
    SECTION_IMPORT,
    SECTION_MEMORY,
    MalformedModule,
    encode_section,
    leb_encode,
    leb_u32,
    section_spans,
)

RESERVED_MODULE = "agentfactory:scratch"
WASI_MODULE = "wasi_snapshot_preview1"
ROUTED = frozenset({"fd_write", "fd_pwrite"})

_FUNC, _TABLE, _MEMORY, _GLOBAL, _TAG = 0, 1, 2, 3, 4


def _name(data: bytes, pos: int) -> tuple[bytes, int, int]:
    """(the name's bytes, position of its length, position after it)."""
    length, start = leb_u32(data, pos)
    if start + length > len(data):
        raise MalformedModule("an import name runs past the end of the binary")
    return data[start : start + length], pos, start + length


def _limits(data: bytes, pos: int) -> tuple[int, int]:
    """(the limits' flags, position after them)."""
    flags = data[pos]
    if flags & 0x04:  # 64-bit limits: u64 LEB128 numbers, which leb_u32 does not read
        raise _Unroutable
    pos = leb_u32(data, pos + 1)[1]
    if flags & 0x01:
        pos = leb_u32(data, pos)[1]
    return flags, pos


class _Unroutable(Exception):
    """The module is left as it is (the host path)."""


# A reference type with a heap type after it ((ref null ht), (ref ht)): more than one byte, which this
# reader does not follow. Every other value or reference type is one byte.
_TYPED_REFERENCES = (0x63, 0x64)


def _one_byte_type(data: bytes, pos: int) -> int:
    """Position after the value or reference type at `pos`; _Unroutable for a longer one."""
    if pos >= len(data) or data[pos] in _TYPED_REFERENCES:
        raise _Unroutable
    return pos + 1


def _import_entries(data: bytes, body: int, end: int) -> list[tuple[bytes, bytes, int, int, int, int]]:
    """(module, field, kind, entry start, where its field name starts, entry end) of each import."""
    count, pos = leb_u32(data, body)
    entries = []
    for _ in range(count):
        start = pos
        module, _, pos = _name(data, pos)
        field, field_at, pos = _name(data, pos)
        kind = data[pos]
        pos += 1
        if kind == _FUNC:
            pos = leb_u32(data, pos)[1]
        elif kind == _TABLE:
            pos = _limits(data, _one_byte_type(data, pos))[1]  # the reference type, then limits
        elif kind == _MEMORY:
            pos = _limits(data, pos)[1]
        elif kind == _GLOBAL:
            pos = _one_byte_type(data, pos) + 1  # the value type, then mutability
        elif kind == _TAG:
            pos = leb_u32(data, pos + 1)[1]
        else:
            raise _Unroutable
        if pos > end:
            raise MalformedModule("the import section runs past its end")
        entries.append((module, field, kind, start, field_at, pos))
    return entries


def reserved_import(data: bytes) -> bool:
    """Does the module import anything from RESERVED_MODULE? (Such a module is refused: that name is ours.)"""
    reserved = RESERVED_MODULE.encode()
    for section_id, _, body, end in section_spans(data):
        if section_id == SECTION_IMPORT:
            try:
                return any(module == reserved for module, *_ in _import_entries(data, body, end))
            except (_Unroutable, MalformedModule):  # an import this reader does not follow: the bytes alone
                return reserved in data[body:end]  # (a false match refuses a module; never a miss)
    return False


def route_writes(data: bytes) -> bytes:
    """The module with its WASI fd_write/fd_pwrite imported from RESERVED_MODULE, or `data` itself (the
    same object) when it does not qualify: exactly one memory, defined (not imported), 32-bit and not
    shared, and an import of fd_write or fd_pwrite. Raises MalformedModule on a binary it cannot read
    (compile.py has read its structure already, so that does not happen in practice)."""
    spans = list(section_spans(data))
    imports = next(((body, end) for sid, _, body, end in spans if sid == SECTION_IMPORT), None)
    memory = next(((body, end) for sid, _, body, end in spans if sid == SECTION_MEMORY), None)
    if imports is None or memory is None:
        return data
    try:
        entries = _import_entries(data, *imports)
        count, pos = leb_u32(data, memory[0])
        if count != 1:
            return data
        flags, after = _limits(data, pos)
    except _Unroutable:
        return data
    if flags not in (0x00, 0x01) or after != memory[1]:  # shared memory, or a section with more in it
        return data
    wasi, reserved = WASI_MODULE.encode(), RESERVED_MODULE.encode()
    routed = [e for e in entries if e[0] == wasi and e[1].decode("utf-8", "replace") in ROUTED and e[2] == _FUNC]
    if not routed or any(e[2] == _MEMORY for e in entries) or any(e[0] == reserved for e in entries):
        return data
    new_module = leb_encode(len(reserved)) + reserved
    body = bytearray(leb_encode(len(entries)))
    for entry in entries:
        start, field_at, end = entry[3:]
        body += new_module + data[field_at:end] if entry in routed else data[start:end]
    out = bytearray(data[:8])
    for sid, header, _, end in spans:
        out += encode_section(SECTION_IMPORT, bytes(body)) if sid == SECTION_IMPORT else data[header:end]
    return bytes(out)
