"""Writes small WebAssembly binaries byte by byte, for the hostile modules that WAT cannot express cheaply
(tens of thousands of functions or nesting levels, a padded data section): the generators under
examples/hostile/ import it, and perf/runner.py (a custom section that changes a module's digest)."""

from __future__ import annotations

from collections.abc import Sequence

WASM_HEADER = b"\x00asm\x01\x00\x00\x00"


def leb(value: int) -> bytes:
    """An unsigned LEB128 number."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def section(section_id: int, body: bytes) -> bytes:
    return bytes([section_id]) + leb(len(body)) + body


def name(text: str) -> bytes:
    return leb(len(text)) + text.encode()


def wasi_command(bodies: Sequence[bytes]) -> bytes:
    """A WASI command: one memory (1 page) exported as `memory`, and one function of type [] -> [] per body
    (locals and instructions, without its size), the first exported as `_start`."""
    types = section(1, leb(1) + b"\x60\x00\x00")  # one type: [] -> []
    functions = section(3, leb(len(bodies)) + b"\x00" * len(bodies))
    memory = section(5, leb(1) + b"\x00\x01")  # one memory, min 1 page
    exports = section(7, leb(2) + name("memory") + b"\x02\x00" + name("_start") + b"\x00\x00")
    code = section(10, leb(len(bodies)) + b"".join(leb(len(body)) + body for body in bodies))
    return WASM_HEADER + types + functions + memory + exports + code
