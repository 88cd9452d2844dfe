"""Writes hostile-many-functions.wasm: a valid WASI command with 60,000 empty functions (about 240 KB).

Small on the wire, yet compiling it takes seconds of CPU: it passes the 8 MiB size cap and must be
refused for its structure (policy module.max_functions) before anything compiles it.

    python gen_many_functions.py OUT.wasm
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (examples.mk): the writer both hostile generators share sits in examples/tools.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from wasm_writer import wasi_command

FUNCTIONS = 60_000


def module() -> bytes:
    return wasi_command([b"\x00\x0b"] * FUNCTIONS)  # no locals, end


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as out:
        out.write(module())
