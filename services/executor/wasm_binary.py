"""Cheap checks on a WebAssembly binary made BEFORE it is handed to the compiler.

Compiling is where an embedder spends unbounded CPU and memory on hostile input, so the module's size
and its import count are bounded first by reading the binary's import section directly (a linear scan
of section headers; no code is parsed).
"""

from __future__ import annotations

from services.common.errors import FailedPrecondition

WASM_MAGIC = b"\x00asm\x01\x00\x00\x00"
_IMPORT_SECTION = 2


def _leb_u32(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    for _ in range(5):
        if pos >= len(data):
            raise FailedPrecondition("module is truncated (bad LEB128)")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise FailedPrecondition("module has a malformed LEB128 number")


def count_imports(data: bytes) -> int:
    """Number of entries in the import section (0 when there is none)."""
    if not data.startswith(WASM_MAGIC):
        raise FailedPrecondition("module is not a WebAssembly 1.0 binary (bad magic or version)")
    pos = len(WASM_MAGIC)
    while pos < len(data):
        section_id = data[pos]
        size, body = _leb_u32(data, pos + 1)
        if body + size > len(data):
            raise FailedPrecondition(f"module section {section_id} runs past the end of the binary")
        if section_id == _IMPORT_SECTION:
            return _leb_u32(data, body)[0]
        pos = body + size
    return 0


def check_bounds(data: bytes, max_bytes: int, max_imports: int) -> None:
    """Raise FailedPrecondition when the module is larger, or imports more, than the policy allows."""
    if len(data) > max_bytes:
        raise FailedPrecondition(
            f"module is {len(data)} bytes; the policy allows at most {max_bytes} (rule module.max_bytes)"
        )
    imports = count_imports(data)
    if imports > max_imports:
        raise FailedPrecondition(
            f"module declares {imports} imports; the policy allows at most {max_imports} (rule module.max_imports)"
        )
