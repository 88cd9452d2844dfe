"""Compile one module in a child process that can be abandoned: `python -m services.executor.sandbox.compile_worker`.

stdin: the wasm bytes; argv[1]: the EngineSettings as JSON; stdout: `Module.serialize()` of the result.
Before compiling the child caps its own CPU time (RLIMIT_CPU) and address space (RLIMIT_AS), so a
module whose compile would run away is killed by the kernel; the parent also kills it at a wall-clock
timeout. Exit 0 = compiled; 3 = the module does not compile (stderr has wasmtime's first line).
"""

from __future__ import annotations

import json
import resource
import sys

import wasmtime

from services.executor.sandbox.config import EngineSettings

EXIT_INVALID = 3


def main() -> int:
    options = json.loads(sys.argv[1])
    cpu_seconds, memory_bytes = int(options.pop("cpu_seconds")), int(options.pop("memory_bytes"))
    settings = EngineSettings(**options)
    wasm = sys.stdin.buffer.read()
    engine = wasmtime.Engine(settings.config())
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    try:
        module = wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as exc:
        sys.stderr.write(str(exc).splitlines()[0][:300])
        return EXIT_INVALID
    sys.stdout.buffer.write(module.serialize())
    return 0


if __name__ == "__main__":
    sys.exit(main())
