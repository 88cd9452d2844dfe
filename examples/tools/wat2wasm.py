"""Compile a WebAssembly text file (.wat) into a binary module with wasmtime's parser.

Usage: python examples/tools/wat2wasm.py IN.wat OUT.wasm

The module is validated with wasmtime's default features before it is written; the output
is replaced atomically so an interrupted build never leaves a truncated module behind.
"""

import os
import sys
import tempfile

import wasmtime


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: wat2wasm.py IN.wat OUT.wasm", file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    try:
        binary = wasmtime.wat2wasm(text)
        wasmtime.Module.validate(wasmtime.Engine(), binary)
    except wasmtime.WasmtimeError as e:
        print(f"{src}: {e}", file=sys.stderr)
        return 1
    write_atomic(dst, bytes(binary))
    return 0


def write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".wasm")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


if __name__ == "__main__":
    sys.exit(main(sys.argv))
