"""Two Sandboxes (two wasmtime Engines) in one process both run agents: every tool, WASI's shadowed
calls and the scratch file system's fast path. A wasmtime FuncType is bound to the first Engine that
uses it; module-level FuncTypes once made the second Engine's first link abort the whole process with a
Rust panic (`comes_from_same_engine`), so this runs in a child process and reads how it ended."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.harness import REPO

CHILD = textwrap.dedent(
    """
    import tempfile
    from pathlib import Path

    from services.executor.kvstore import KvStore
    from services.executor.sandbox import EngineSettings, Sandbox
    from tests.unit.executor.conftest import Runner, wasm_file

    EVERY_TOOL = frozenset({"log", "kv", "clock", "random", "http_get"})
    tmp = Path(tempfile.mkdtemp())
    boxes = [Sandbox(EngineSettings(epoch_tick_ms=5)) for _ in range(2)]
    for i, box in enumerate(boxes * 2):  # interleaved: A, B, A, B
        runner = Runner(box, KvStore(tmp / f"kv{i}.sqlite3"))
        echo = runner.run(wasm_file("echo-upper"), b"two engines", EVERY_TOOL)
        assert echo.output == b"TWO ENGINES", echo
        scratch = frozenset({"scratch"})
        fs = runner.run(wasm_file("fs-conformance"), b"", scratch, fuel=200_000_000, memory_bytes=32 << 20)
        assert fs.output.endswith(b"passed 29/29\\n"), fs.output
    for box in boxes:
        box.close()
    print("both engines ran")
    """
)


def test_two_sandboxes_in_one_process_both_run_agents() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "panicked" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 0 and done.stdout.strip() == "both engines ran", done.stderr[-2000:]
