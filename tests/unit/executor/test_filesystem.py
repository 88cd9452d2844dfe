"""The file system of a run granted `scratch` (docs/tools-abi.md): a private directory preopened at the
guest's `/` (and working directory) with its `scratch` subdirectory at `/scratch`, empty at the start of
each run and removed after it. The C conformance agent (examples/agents/fs-conformance) must print the
same report through the sandbox as under bare wasmtime-py with the same two preopens; so must the Go one
(examples/agents/fs-conformance-go, GOOS=wasip1, whose working directory is the first preopen), and the Rust
(std::fs) and WAT (raw WASI calls) ones, whose templates also ship a read-only file, /data/conformance.txt,
mounted as the executor mounts template files (a third, read-only preopen)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import wasmtime

from afctl.examples import catalogue
from services.executor.events import Outcome
from services.templates.policy import Policy
from tests.unit.executor.conftest import Runner, run_bare_wasi, wasm_file

SCRATCH = frozenset({"scratch"})


def bare_wasmtime(wasm: bytes, workdir: Path, data: Path | None = None) -> bytes:
    """The reference: wasmtime-py's own WASI, the same preopens (`data` read-only at /data), stdout to a
    file."""
    root = workdir / "root"
    (root / "scratch").mkdir(parents=True)
    config = wasmtime.WasiConfig()
    config.argv = ["fs-conformance"]
    config.preopen_dir(str(root), "/")
    config.preopen_dir(str(root / "scratch"), "/scratch")
    if data is not None:
        config.preopen_dir(str(data), "/data", fs_mutable=False)
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


# name: its number of checks. Their templates ship /data/conformance.txt (examples/agents/<name>/files/).
WITH_FILES = {"fs-conformance-rust": 39, "fs-conformance-wat": 42}


def template_files(name: str, into: Path) -> dict[str, bytes]:
    """The example's template files laid out under `into` as the executor mounts them; returns them."""
    (example,) = [t for t in catalogue("agents") if t.name == name]
    files = example.files()
    for guest, content in files.items():
        path = into / guest.removeprefix("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


@pytest.mark.parametrize("name", list(WITH_FILES))
def test_conformance_agent_with_template_files_matches_bare_wasmtime(runner: Runner, tmp_path: Path, name: str) -> None:
    wasm = wasm_file(name)
    assert Policy.load().module_violation(wasm) is None  # within the default policy's module bounds
    files = template_files(name, tmp_path / "files")
    data = tmp_path / "files" / "data"
    reference = bare_wasmtime(wasm, tmp_path / "bare", data)
    assert reference.endswith(f"passed {WITH_FILES[name]}/{WITH_FILES[name]}\n".encode()), reference.decode()

    prepared = runner.sandbox.link(runner.sandbox.compile(wasm, scratch=True), SCRATCH, f"{name}@1.0.0", True)
    state = runner.state(prepared, b"", SCRATCH, fuel=100_000_000)
    state.spec.mounts = ((str(data), "/data"),)
    finished = runner.sandbox.run(prepared, state)
    output = b"".join(e.data for e in state.events if type(e).__name__ == "Output")  # type: ignore[attr-defined]
    assert finished.outcome is Outcome.SUCCEEDED and finished.exit_code == 0, output.decode()
    assert output == reference
    # Every refused change left the template's files as shipped, and nothing was added beside them.
    assert {"/" + p.relative_to(tmp_path / "files").as_posix(): p.read_bytes() for p in data.rglob("*")} == files


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
