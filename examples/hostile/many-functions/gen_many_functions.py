"""Writes hostile-many-functions.wasm: a valid WASI command with 60,000 empty functions (about 240 KB).

Small on the wire, yet compiling it takes seconds of CPU: it passes the 8 MiB size cap and must be
refused for its structure (policy module.max_functions) before anything compiles it.

    python gen_many_functions.py OUT.wasm
"""

from __future__ import annotations

import sys

FUNCTIONS = 60_000


def leb(value: int) -> bytes:
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


def module() -> bytes:
    types = section(1, leb(1) + b"\x60\x00\x00")  # one type: [] -> []
    functions = section(3, leb(FUNCTIONS) + b"\x00" * FUNCTIONS)
    memory = section(5, leb(1) + b"\x00\x01")  # one memory, min 1 page
    exports = section(7, leb(2) + name("memory") + b"\x02\x00" + name("_start") + b"\x00\x00")
    code = section(10, leb(FUNCTIONS) + b"\x02\x00\x0b" * FUNCTIONS)  # size 2: no locals, end
    return b"\x00asm\x01\x00\x00\x00" + types + functions + memory + exports + code


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as out:
        out.write(module())
