"""Detach a module's start function so that it runs as a call after instantiation, not inside it.

wasmtime runs the wasm start function inside instantiation; when it traps there is no instance, so the
run cannot see how much memory the guest had grown to, and a memory bomb in the start function would be
reported as a plain trap instead of the memory limit (as the same bomb in `_start` is). Rewriting the
binary before compiling — drop the start section, export the function under START_EXPORT — lets the
engine instantiate first and then call it under the same store, limits, fuel and deadline.
"""

from __future__ import annotations

from services.templates.wasm_structure import (
    SECTION_EXPORT,
    SECTION_START,
    MalformedModule,
    encode_section,
    leb_encode,
    leb_u32,
    section_spans,
)

START_EXPORT = "__agentfactory_start"


def _export_names(data: bytes, body: int, end: int) -> set[str]:
    count, pos = leb_u32(data, body)
    names = set()
    for _ in range(count):
        length, pos = leb_u32(data, pos)
        names.add(data[pos : pos + length].decode("utf-8", "replace"))
        pos += length + 1  # the name, then the export kind
        pos = leb_u32(data, pos)[1]  # the index
    return names


def detach_start(data: bytes) -> tuple[bytes, str | None]:
    """(the module without a start section, START_EXPORT) or (data, None) when it has no start function.
    Raises MalformedModule on a binary it cannot read or one that already exports START_EXPORT (so the
    export's presence in a compiled module always means a detached start function)."""
    found = list(section_spans(data))
    start = next(((body, end) for sid, _, body, end in found if sid == SECTION_START), None)
    if start is None:
        return data, None
    function = leb_u32(data, start[0])[0]
    export = next(((body, end) for sid, _, body, end in found if sid == SECTION_EXPORT), None)
    if export and START_EXPORT in _export_names(data, *export):
        raise MalformedModule(f"module exports {START_EXPORT!r}, a name the executor reserves")
    name = START_EXPORT
    encoded = name.encode()
    entry = leb_encode(len(encoded)) + encoded + b"\x00" + leb_encode(function)  # kind 0: a function
    if export is None:
        exports = encode_section(SECTION_EXPORT, leb_encode(1) + entry)
    else:
        count, first = leb_u32(data, export[0])
        exports = encode_section(SECTION_EXPORT, leb_encode(count + 1) + data[first : export[1]] + entry)
    out = bytearray(data[:8])
    for sid, header_start, _, end in found:
        if sid == SECTION_EXPORT:
            out += exports
        elif sid == SECTION_START:
            if export is None:  # export comes right before start in section order: take its place
                out += exports
        else:
            out += data[header_start:end]
    return bytes(out), name
