"""Writes hostile-deep-nesting.wasm: a valid WASI command whose `_start` is 60,000 nested loops (~180 KB).

One small function, far under every size bound, yet cranelift's compile time grows faster than linearly
with loop nesting (50,000 levels: ~5 s of CPU). It must be refused for its structure (policy
module.max_nesting) before anything compiles it.

    python gen_deep_nesting.py OUT.wasm
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (examples.mk): the writer both hostile generators share sits in examples/tools.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from wasm_writer import wasi_command

DEPTH = 60_000


def module() -> bytes:
    body = b"\x00" + b"\x03\x40" * DEPTH + b"\x0b" * DEPTH + b"\x0b"  # no locals; loop (empty type) ... end
    return wasi_command([body])


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as out:
        out.write(module())
