"""The file system of a run granted `scratch` (docs/tools-abi.md): a private directory preopened at the
guest's `/` (and working directory) with its `scratch` subdirectory at `/scratch`, empty at the start of
each run and removed after it. The C conformance agent (examples/agents/fs-conformance) must print the
same report through the sandbox as under bare wasmtime-py with the same two preopens; so must the Go one
(examples/agents/fs-conformance-go, GOOS=wasip1, whose working directory is the first preopen)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import wasmtime

from services.executor.events import Outcome
from tests.unit.executor.conftest import Runner, run_bare_wasi, wasm_file

SCRATCH = frozenset({"scratch"})


def bare_wasmtime(wasm: bytes, workdir: Path) -> bytes:
    """The reference: wasmtime-py's own WASI, the same preopens, stdout to a file."""
    root = workdir / "root"
    (root / "scratch").mkdir(parents=True)
    config = wasmtime.WasiConfig()
    config.argv = ["fs-conformance"]
    config.preopen_dir(str(root), "/")
    config.preopen_dir(str(root / "scratch"), "/scratch")
    return run_bare_wasi(wasm, config, workdir / "stdout")


# name: the tools its template grants (Go reads the clock at start-up)
AGENTS = {"fs-conformance": SCRATCH, "fs-conformance-go": SCRATCH | {"clock"}}


@pytest.mark.parametrize("name", list(AGENTS))
def test_conformance_agent_matches_bare_wasmtime(runner: Runner, tmp_path: Path, name: str) -> None:
    wasm = wasm_file(name)
    reference = bare_wasmtime(wasm, tmp_path)
    assert reference.endswith(b"passed 29/29\n"), reference.decode()
    out = runner.run(wasm, tools=AGENTS[name], fuel=200_000_000, memory_bytes=32 << 20)
    assert out.finished.outcome is Outcome.SUCCEEDED and out.finished.exit_code == 0, out.output.decode()
    assert out.output == reference


def test_each_run_starts_empty_and_its_directory_is_removed(
    runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(runs))  # where the sandbox makes run directories
    wasm = wasm_file("fs-conformance")
    for _ in range(2):  # the second run would fail "empty-at-start" if it saw the first run's files
        out = runner.run(wasm, tools=SCRATCH)
        assert out.finished.exit_code == 0, out.output.decode()
        assert list(runs.iterdir()) == []


def test_without_scratch_there_is_no_file_system(runner: Runner) -> None:
    out = runner.run(wasm_file("fs-conformance"), tools=frozenset())
    assert out.finished.outcome is Outcome.FAILED and out.finished.exit_code == 1, out.finished
    assert b"relative-create FAIL" in out.output  # no preopen: libc answers ENOTCAPABLE for every path
    assert b"passed 4/29" in out.output  # only the refusals hold
