"""Writes hostile-deep-nesting.wasm: a valid WASI command whose `_start` is 60,000 nested loops (~180 KB).

One small function, far under every size bound, yet cranelift's compile time grows faster than linearly
with loop nesting (50,000 levels: ~5 s of CPU). It must be refused for its structure (policy
module.max_nesting) before anything compiles it.

    python gen_deep_nesting.py OUT.wasm
"""

from __future__ import annotations

import sys

DEPTH = 60_000


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
    body = b"\x00" + b"\x03\x40" * DEPTH + b"\x0b" * DEPTH + b"\x0b"  # no locals; loop (empty type) ... end
    types = section(1, leb(1) + b"\x60\x00\x00")
    functions = section(3, leb(1) + b"\x00")
    memory = section(5, leb(1) + b"\x00\x01")
    exports = section(7, leb(2) + name("memory") + b"\x02\x00" + name("_start") + b"\x00\x00")
    code = section(10, leb(1) + leb(len(body)) + body)
    return b"\x00asm\x01\x00\x00\x00" + types + functions + memory + exports + code


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as out:
        out.write(module())
