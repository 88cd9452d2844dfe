"""Build the hostile `huge-module`: huge-module.wat padded past 8 MiB with a passive data segment.

Usage: python examples/hostile/huge-module/gen_huge_module.py IN.wat OUT.wasm [PAYLOAD_BYTES]

The padding is one *passive* data segment of deterministic, incompressible bytes (SHAKE-256 of a
fixed seed), so the module stays valid, needs only one page of memory and would simply exit 0 if
it ever ran: its size alone is the attack (upload, storage, compile time). The default payload is
9 MiB, over the 8 MiB module-size cap.
"""

import hashlib
import os
import sys
from pathlib import Path

import wasmtime

# Run as a script (examples.mk): the LEB128 writer the hostile generators share sits in examples/tools.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from wasm_writer import leb, section

from services.templates.wasm_structure import section_spans  # wasm_writer put the repository on sys.path

DEFAULT_PAYLOAD = 9 * 1024 * 1024
DATA_SECTION = 11


def sections(module: bytes) -> list[tuple[int, bytes]]:
    """Split a module into (id, raw section bytes including its header)."""
    return [(section_id, module[start:end]) for section_id, start, _, end in section_spans(module)]


def pad(module: bytes, payload_size: int) -> bytes:
    parts = sections(module)
    if any(section_id == DATA_SECTION for section_id, _ in parts):
        raise SystemExit("huge-module.wat must not have data segments of its own")
    payload = hashlib.shake_256(b"agentfactory hostile huge-module").digest(payload_size)
    segment = leb(1) + bytes([0x01]) + leb(len(payload)) + payload  # one passive segment
    data = section(DATA_SECTION, segment)
    # The data section follows every other known section; custom sections (id 0) may trail it.
    last_known = max((i for i, (section_id, _) in enumerate(parts) if section_id != 0), default=-1)
    ordered = [raw for _, raw in parts[: last_known + 1]] + [data] + [raw for _, raw in parts[last_known + 1 :]]
    return module[:8] + b"".join(ordered)


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print("usage: gen_huge_module.py IN.wat OUT.wasm [PAYLOAD_BYTES]", file=sys.stderr)
        return 2
    src, out = argv[1], argv[2]
    size = int(argv[3]) if len(argv) == 4 else DEFAULT_PAYLOAD
    with open(src, encoding="utf-8") as f:
        module = pad(bytes(wasmtime.wat2wasm(f.read())), size)
    wasmtime.Module.validate(wasmtime.Engine(), module)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(module)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
