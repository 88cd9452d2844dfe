"""Cheap checks on a WebAssembly binary made BEFORE it is handed to the compiler.

Compiling is where an embedder spends unbounded CPU and memory on hostile input, so the module's size
and its import count are bounded first by reading the binary's import section directly (a linear scan
of section headers; no code is parsed). The reading is services/templates/wasm_structure.py's; this module
only answers in the executor's terms (FAILED_PRECONDITION).
"""

from __future__ import annotations

from services.common.errors import FailedPrecondition
from services.templates.wasm_structure import SECTION_IMPORT, MalformedModule, leb_u32, sections


def count_imports(data: bytes) -> int:
    """Number of entries in the import section (0 when there is none)."""
    try:
        for section_id, body, _ in sections(data):
            if section_id == SECTION_IMPORT:
                return leb_u32(data, body)[0]
    except MalformedModule as exc:
        raise FailedPrecondition(str(exc)) from None
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
