"""Writes small WebAssembly binaries byte by byte, for the hostile modules that WAT cannot express cheaply
(tens of thousands of functions or nesting levels, a padded data section): the generators under
examples/hostile/ import it, and perf/runner.py (a custom section that changes a module's digest).

The LEB128 and section encoders are the executor's own (services/templates/wasm_structure.py, which
rewrites modules before compiling them): one encoder for every module the project writes."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

# The generators run as scripts (examples.mk) with only examples/tools on sys.path: add the repository's root.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from services.templates.wasm_structure import WASM_MAGIC as WASM_HEADER  # noqa: E402
from services.templates.wasm_structure import encode_section as section  # noqa: E402
from services.templates.wasm_structure import leb_encode as leb  # noqa: E402

__all__ = ["WASM_HEADER", "leb", "name", "section", "wasi_command"]


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
