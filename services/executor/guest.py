"""Bounds-checked access to a guest's linear memory from inside a host function.

Host functions receive i32 pointers and lengths from untrusted code. Every access goes through these
helpers, which look the `memory` export up afresh (a `memory.grow` may have moved or resized it) and
refuse any range that does not lie wholly inside it. Nothing here raises on bad guest input.
"""

from __future__ import annotations

import ctypes
import struct

import wasmtime

U32 = 0xFFFFFFFF


def _region(caller: wasmtime.Caller) -> tuple[int, int] | None:
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory):
        return None
    length = memory.data_len(caller)
    base = ctypes.addressof(memory.data_ptr(caller).contents) if length else 0
    return base, length


def read(caller: wasmtime.Caller, ptr: int, length: int) -> bytes | None:
    """The guest bytes [ptr, ptr+length), or None when out of bounds. i32 values arrive signed."""
    ptr &= U32
    length &= U32
    region = _region(caller)
    if region is None or ptr + length > region[1]:
        return None
    return ctypes.string_at(region[0] + ptr, length) if length else b""


def write(caller: wasmtime.Caller, ptr: int, cap: int, data: bytes) -> bool:
    """Copy min(len(data), cap) bytes to the guest at ptr; False when [ptr, ptr+cap) is out of bounds."""
    ptr &= U32
    cap &= U32
    region = _region(caller)
    if region is None or ptr + cap > region[1]:
        return False
    n = min(len(data), cap)
    if n:
        ctypes.memmove(region[0] + ptr, data, n)
    return True


def read_u32_pairs(caller: wasmtime.Caller, ptr: int, count: int) -> list[tuple[int, int]] | None:
    """`count` (u32, u32) little-endian pairs at ptr (a WASI iovec array), or None when out of bounds."""
    raw = read(caller, ptr, (count & U32) * 8) if (count & U32) <= 1024 else None
    if raw is None:
        return None
    words = struct.unpack_from(f"<{len(raw) // 4}I", raw)
    return [(words[i], words[i + 1]) for i in range(0, len(words), 2)]


def write_u32(caller: wasmtime.Caller, ptr: int, value: int) -> bool:
    return write(caller, ptr, 4, (value & U32).to_bytes(4, "little"))
