"""A hostile agent author against the run's file system (issue 14): `/` and `/scratch` are the run's own
private directory and /data the template's read-only files, mounted from the executor's shared file cache
(services/executor/files.py lays the tree out here exactly as the executor does). The hostile agents
examples/hostile/fs-escape and fs-isolation try escapes, links, renames, truncation, time stamps, rights,
renumbering, long and bad names, and other runs' directories; every attempt must fail with the WASI errno a
program expects, and nothing on the host may change: the cached template file (content, mode, link count,
time stamps), the directory holding run directories, and a canary file beside them."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import wasmtime

from services.executor.events import Finished, Outcome
from services.executor.files import Mounts, TemplateFiles
from services.executor.sandbox.wasi_files import MAX_DESCRIPTORS
from services.templates.manifest import TemplateFile
from services.templates.policy import FileBounds
from tests.unit.executor.conftest import Runner, run_bare_wasi, wasm_file

SCRATCH = frozenset({"scratch"})
SECRET = b"shipped with the template, read-only\n"  # examples/hostile/fs-escape/files/data/secret.txt
CANARY = b"a host file no run may reach\n"

# fs-escape's checks and the errno each must get (0: the call must work); WASI numbering: 8 EBADF,
# 25 EILSEQ, 28 EINVAL, 32 ELOOP, 37 ENAMETOOLONG, 44 ENOENT, 58 ENOTSUP, 63 EPERM.
ESCAPE_CHECKS = {
    "preopens": 0, "readdir-root-own-entries-only": 0, "readdir-scratch-empty": 0,
    "readdir-data-template-file-only": 0,
    # the host path (stdin), by name
    "host-path-absolute-open": 63, "host-path-relative-open": 44, "host-path-dotdot-open": 63,
    "host-path-dotdot-create": 63,
    # symlinks out: absolute ones are refused when made, `..` ones when followed
    "symlink-absolute-host-path": 63, "symlink-absolute-not-made": 0, "symlink-dotdot-made": 0,
    "symlink-dotdot-open": 63, "symlink-dotdot-create-through": 63, "host-dir-symlink-made": 0,
    "host-dir-symlink-open": 63, "symlink-to-stdin-file": 63, "symlink-to-slash": 63, "symlink-loop": 32,
    "symlink-chain-40-followed": 0, "symlink-chain-41-eloop": 32,
    # `.` and `..` of the preopens
    "scratch-dotdot-dotdot": 63, "root-dot-opens": 0, "root-dot-then-dotdot": 63, "root-dotdot": 63,
    "data-dotdot": 63,
    # the template file and its mount
    "hardlink-template-into-root": 63, "hardlink-not-made": 0, "hardlink-within-data": 63,
    "hardlink-root-into-data": 63, "rename-template-file-out": 63, "rename-data-mount": 63,
    "rename-into-data": 63, "rename-over-template-file": 63, "open-template-o-trunc": 63,
    "open-template-write-rights": 63, "open-template-all-rights": 63, "create-excl-in-data": 63,
    "data-dot-all-rights": 63,
    # what a read descriptor of it can do
    "open-template-append-flag-reads": 0, "append-fd-write": 8, "read-fd-write": 8, "read-fd-pwrite": 8,
    "read-fd-set-size": 63, "read-fd-set-times": 63, "read-fd-allocate": 58, "read-fd-set-rights": 58,
    "read-fd-set-append-then-write": 8, "data-preopen-set-rights": 58,
    # time stamps, new descriptors of the mount, renumbering one over a writable directory
    "path-set-times-template": 63, "path-set-times-now-template": 63, "path-set-times-data-dir": 63,
    "data-dot-opens-read-only": 0, "data-dot-create-refused": 63, "renumber-data-over-writable-dir": 0,
    "renumbered-dir-create-refused": 63, "unlink-template-file": 63, "rmdir-data-mount": 63,
    # names past the limits, bad names, a tree deeper than PATH_MAX
    "path-4096-bytes": 37, "path-1-mib": 37, "name-256-bytes": 37, "path-with-nul": 28, "path-not-utf8": 25,
    "deep-tree-made-through-fds": 0, "deep-path-too-long": 37, "deep-leaf-created": 0,
    "template-file-unchanged": 0,
}  # fmt: skip


def report(checks: dict[str, int]) -> str:
    """The report an agent prints when every check holds."""
    lines = [f"{name} ok" + (f" (errno {errno})" if errno else "") for name, errno in checks.items()]
    return "\n".join([*lines, f"passed {len(checks)}/{len(checks)}", ""])


@dataclass
class Host:
    """The host side of a run: where run directories are made, the template's cached file tree, a canary."""

    runs: Path  # tempfile.tempdir while the test runs: every run directory is made here
    mounts: Mounts  # the template's tree as the executor's file cache built it
    canary: Path  # beside the run directories: `../../canary.txt` from a run's `/` would be it

    @property
    def data(self) -> Path:
        ((host, guest),) = self.mounts.dirs
        assert guest == "/data"
        return Path(host)

    def state(self) -> dict[str, object]:
        """Everything a run must leave as it was: the cached template file (bytes, mode, links, change and
        modification times: a link, rename, chmod or write moves ctime), its tree, the canary, and what
        lies beside the run directories. Not atime: reading is allowed."""
        secret = self.data / "secret.txt"
        info = secret.stat()
        return {
            "secret": hashlib.sha256(secret.read_bytes()).hexdigest(),
            "secret_stat": (info.st_mode, info.st_nlink, info.st_size, info.st_mtime_ns, info.st_ctime_ns),
            "tree": sorted(str(p.relative_to(self.data.parent)) for p in self.data.parent.rglob("*")),
            "data_mode": self.data.stat().st_mode,
            "canary": hashlib.sha256(self.canary.read_bytes()).hexdigest(),
            "runs": sorted(p.name for p in self.runs.iterdir()),
        }


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    runs = tmp_path / "runs"
    runs.mkdir()
    canary = runs / "canary.txt"
    canary.write_bytes(CANARY)
    monkeypatch.setattr(tempfile, "tempdir", str(runs))  # where the sandbox makes run directories

    async def fetch(digest: str, max_bytes: int) -> bytes:
        assert digest == hashlib.sha256(SECRET).hexdigest()
        return SECRET

    cache = TemplateFiles(tmp_path / "files", 1 << 20, FileBounds(), fetch)
    entry = TemplateFile(hashlib.sha256(SECRET).hexdigest(), len(SECRET))
    mounts = asyncio.run(cache.acquire({"/data/secret.txt": entry}))
    yield Host(runs, mounts, canary)
    mounts.release()


def run(
    runner: Runner, name: str, stdin: bytes, mounts: Mounts | None = None, tools: frozenset[str] = SCRATCH
) -> tuple[Finished, str]:
    """One run of example `name` granted `tools` (with the template's files when `mounts`), the way the
    executor runs it; returns how it ended and what it printed."""
    prepared = runner.sandbox.link(
        runner.sandbox.compile(wasm_file(name), "scratch" in tools), tools, f"{name}@1.0.0", True
    )
    # Deadline far off: the machine is shared and slow; fuel and the agents' own loops end them.
    state = runner.state(prepared, stdin, tools, fuel=200_000_000, memory_bytes=4 << 20, timeout_ms=600_000)
    if mounts is not None:
        state.spec.mounts = mounts.dirs
    finished = runner.sandbox.run(prepared, state)
    output = b"".join(e.data for e in state.events if type(e).__name__ == "Output")  # type: ignore[attr-defined]
    return finished, output.decode()


# --- fs-escape -------------------------------------------------------------------------------------


def test_every_escape_and_change_is_refused_with_its_errno_and_the_host_is_unchanged(
    runner: Runner, host: Host
) -> None:
    before = host.state()
    finished, output = run(runner, "hostile-fs-escape", f"{host.canary}\n".encode(), host.mounts)
    assert output == report(ESCAPE_CHECKS)
    assert (finished.outcome, finished.exit_code) == (Outcome.SUCCEEDED, 0), finished
    # The run's directory is gone, with the symlinks out it left there (host-dir names the directory of the
    # canary and of every run directory: a clean-up that followed it would have emptied it).
    assert host.state() == before
    assert host.canary.read_bytes() == CANARY


def test_with_no_host_path_given_it_aims_at_etc_passwd_and_skips_the_directory_symlink(
    runner: Runner, host: Host
) -> None:
    passwd = Path("/etc/passwd")
    before = (hashlib.sha256(passwd.read_bytes()).hexdigest(), passwd.stat().st_mtime_ns)
    finished, output = run(runner, "hostile-fs-escape", b"", host.mounts)
    skipped = {"host-dir-symlink-made", "host-dir-symlink-open"}
    assert output == report({k: v for k, v in ESCAPE_CHECKS.items() if k not in skipped})
    assert finished.outcome is Outcome.SUCCEEDED
    assert (hashlib.sha256(passwd.read_bytes()).hexdigest(), passwd.stat().st_mtime_ns) == before


def test_the_escape_agent_detects_a_writable_template_mount(tmp_path: Path) -> None:
    """The control: with /data mounted writable (bare wasmtime's `fs_mutable=True`, the mistake the
    executor must not make) the same agent reports the changes it could make and exits 1, so its passing
    report through the sandbox is the sandbox's doing, not a probe that cannot fail."""
    root, data = tmp_path / "root", tmp_path / "data"
    (root / "scratch").mkdir(parents=True)
    data.mkdir()
    (data / "secret.txt").write_bytes(SECRET)
    config = wasmtime.WasiConfig()
    config.argv = ["hostile-fs-escape"]
    config.preopen_dir(str(root), "/")
    config.preopen_dir(str(root / "scratch"), "/scratch")
    config.preopen_dir(str(data), "/data")  # writable: the hole
    (tmp_path / "stdin").write_bytes(b"")
    config.stdin_file = str(tmp_path / "stdin")
    with pytest.raises(AssertionError):  # run_bare_wasi insists on exit 0; this run must exit 1
        run_bare_wasi(wasm_file("hostile-fs-escape"), config, tmp_path / "stdout")
    output = (tmp_path / "stdout").read_text()
    for check in ("hardlink-template-into-root", "open-template-o-trunc", "path-set-times-template"):
        assert f"{check} FAIL it succeeded, want errno 63" in output, output
    assert "host-path-absolute-open ok (errno 63)" in output  # escapes stay refused: only /data changed


# --- fs-isolation ------------------------------------------------------------------------------------


def test_a_later_run_of_the_same_template_finds_nothing_an_earlier_one_left(runner: Runner, host: Host) -> None:
    before = host.state()
    planted, output = run(runner, "hostile-fs-isolation", b"P", host.mounts)
    assert output.endswith("passed 6/6\n") and planted.outcome is Outcome.SUCCEEDED, output
    assert host.state() == before  # its directory, with what it planted, is gone
    later, output = run(runner, "hostile-fs-isolation", b"E", host.mounts)
    assert output == report(
        {
            "preopens": 0,
            "planted-file-absent": 0,
            "planted-scratch-file-absent": 0,
            "planted-dir-absent": 0,
            "planted-symlink-absent": 0,
            "readdir-root-only-scratch": 0,
            "readdir-scratch-empty": 0,
        }
    )
    assert later.outcome is Outcome.SUCCEEDED
    assert host.state() == before


def _root_holding(runs: Path, marker: str) -> Path | None:
    """The host directory that is the `/` of the run whose marker file is `marker`, once it is there."""
    for run_dir in runs.glob("af-run-*"):
        for found in run_dir.rglob(marker):
            return found.parent
    return None


def test_concurrent_runs_cannot_see_or_reach_each_other(runner: Runner, host: Host) -> None:
    """Two runs at once, each told the other's host directory (an attacker who guessed it): neither sees
    the other's marker in its own tree, nor reaches it by that path, absolute or `..`-relative."""
    before = host.state()
    results: dict[str, tuple[Finished, str]] = {}

    def agent(mine: str, theirs: str) -> None:
        results[mine] = run(runner, "hostile-fs-isolation", f"W{mine}{theirs}".encode(), host.mounts)

    threads = [threading.Thread(target=agent, args=pair) for pair in (("A", "B"), ("B", "A"))]
    for thread in threads:
        thread.start()
    roots: dict[str, Path] = {}
    # Until both runs got going, or one ended: no time bound (pytest's timeout ends a hang).
    while len(roots) < 2 and any(t.is_alive() for t in threads):
        for mine in "AB":
            found = _root_holding(host.runs, f"mine-{mine}")
            if found is not None:
                roots[mine] = found
        time.sleep(0.01)
    # Both are running now (each waits for /go): tell each the other's directory, atomically.
    for mine, theirs in (("A", "B"), ("B", "A")):
        if mine in roots:
            staged = roots[mine].parent / f"go-{mine}.tmp"  # outside the run's `/`: its listing stays exact
            staged.write_text(f"{roots.get(theirs, '/nonexistent')}\n")
            os.rename(staged, roots[mine] / "go")
    for thread in threads:
        thread.join()
    assert set(roots) == {"A", "B"}, (roots, results)
    peer_checks = {
        "preopens": 0,
        "own-marker-written": 0,
        "go-arrived": 0,
        "peer-marker-absent": 0,
        "peer-marker-absent-in-scratch": 0,
        "readdir-root-own-entries-only": 0,
        "peer-absolute-open": 63,
        "peer-absolute-symlink": 63,
        "peer-dotdot-symlink-made": 0,
        "peer-dotdot-symlink-open": 63,
        "peer-dotdot-truncate": 63,
        "own-marker-intact": 0,
    }
    for mine in "AB":
        finished, output = results[mine]
        assert output == report(peer_checks), (mine, output)
        assert finished.outcome is Outcome.SUCCEEDED, finished
    assert host.state() == before  # both directories gone, the symlinks into each other with them


# --- descriptors ---------------------------------------------------------------------------------------

# Descriptors the process may open beyond those it holds when a flood test starts: a per-run bound below
# this passes the flood tests (about 0.5 s of opens; the executor's real limit, 20,000 here, takes ~2 s).
FLOOD_ROOM = 4096


@pytest.fixture
def few_descriptors() -> Iterator[None]:
    """The process's open-files limit lowered to FLOOD_ROOM above what it holds, for the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = len(os.listdir("/proc/self/fd")) + FLOOD_ROOM
    resource.setrlimit(resource.RLIMIT_NOFILE, (room if hard == resource.RLIM_INFINITY else min(room, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_flood_agent_opens_64_descriptors_by_default(runner: Runner, host: Host) -> None:
    finished, output = run(runner, "hostile-fs-fd-flood", b"")
    assert (output, finished.outcome) == ("opened 64, last errno 0\n", Outcome.SUCCEEDED)
    assert host.state()["runs"] == ["canary.txt"]


def _made_dirs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every directory tempfile.mkdtemp makes (the sandbox's run directories), by path, so the
    test finds a run's directory without listing anything (a flooded process cannot open a directory)."""
    made: list[Path] = []
    real: Callable[..., str] = tempfile.mkdtemp

    def mkdtemp(*args: object, **kwargs: object) -> str:
        path = real(*args, **kwargs)
        made.append(Path(path))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    return made


def test_a_run_cannot_take_every_descriptor_of_the_executor(
    runner: Runner, host: Host, few_descriptors: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _made_dirs(monkeypatch)
    result: list[tuple[Finished, str]] = []
    flood = threading.Thread(target=lambda: result.append(run(runner, "hostile-fs-fd-flood", b"H")))
    flood.start()
    # Until the run flooded its descriptors, or ended: no time bound (pytest's timeout ends a hang).
    while not (made and (made[0] / "flooded").exists()) and flood.is_alive():
        time.sleep(0.01)
    try:  # the run holds every descriptor it could get: can the executor still open a file?
        os.close(os.open(os.devnull, os.O_RDONLY))
        host_could_open = 0
    except OSError as exc:
        host_could_open = exc.errno or -1
    finally:
        if made:
            (made[0] / "go").mkdir()  # a mkdir needs no descriptor
        flood.join()
    assert made and result, "the flood run never started"
    why = errno.errorcode.get(host_could_open, str(host_could_open))
    assert host_could_open == 0, f"the executor's process could not open a file while the run held its own: {why}"
    finished, output = result[0]
    assert finished.outcome is Outcome.SUCCEEDED, finished
    assert output == f"opened {MAX_DESCRIPTORS - 5}, last errno 33\n", output  # the run's bound: EMFILE


@pytest.mark.parametrize("tools", [SCRATCH, frozenset()], ids=["scratch", "template-files-only"])
def test_a_run_is_refused_descriptors_before_the_process_runs_out(
    runner: Runner, host: Host, few_descriptors: None, tools: frozenset[str]
) -> None:
    """Without `scratch` the flood opens "." of /data (fd 3 then): a bound must hold for both linkers. It
    holds MAX_DESCRIPTORS with stdio and its preopens (`/`, `/scratch`, `/data`; or `/data` alone)."""
    finished, output = run(runner, "hostile-fs-fd-flood", b"F", host.mounts, tools)
    assert finished.outcome is Outcome.SUCCEEDED, (finished, output)
    preopens = 3 if "scratch" in tools else 1
    assert MAX_DESCRIPTORS < FLOOD_ROOM - 16  # stopped by a bound of its own, not by the process's limit
    assert output == f"opened {MAX_DESCRIPTORS - 3 - preopens}, last errno 33\n", output  # EMFILE


def test_the_run_directory_is_removed_after_a_descriptor_flood(
    runner: Runner, host: Host, few_descriptors: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's descriptors fill the process's open-files limit until its store is closed: the store is
    closed before the directory is removed (in the other order the removal failed with EMFILE and the
    directory, with what the run wrote, stayed on the host)."""
    made = _made_dirs(monkeypatch)
    finished, output = run(runner, "hostile-fs-fd-flood", b"F")
    assert output.startswith("opened ") and finished.outcome is Outcome.SUCCEEDED, (output, finished)
    assert len(made) == 1
    assert not made[0].exists(), f"the run's directory was left behind: {sorted(os.listdir(made[0]))}"


# --- WASI calls that trap ------------------------------------------------------------------------------

TRAPPING_OPEN = """
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x")
  (func (export "_start")
    ;; a path outside linear memory, or rights bits preview 1 does not define: wasmtime's WASI traps
    (call $exit (call $path_open (i32.const 3) (i32.const 0) (i32.const PTR) (i32.const 1) (i32.const 1)
      (i64.const RIGHTS) (i64.const 0) (i32.const 0) (i32.const 0)))))
"""

BAD_CALLS = {"path-outside-memory": ("0x7ffffff0", "0x40"), "undefined-rights-bits": ("16", "-1")}


def _bare_wasmtime_traps(wat: str, tmp_path: Path) -> str:
    """The reference: wasmtime-py's own WASI with `/` preopened; the trap's first line."""
    (tmp_path / "root").mkdir(parents=True)
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    config = wasmtime.WasiConfig()
    config.preopen_dir(str(tmp_path / "root"), "/")
    store.set_wasi(config)
    start = linker.instantiate(store, wasmtime.Module(engine, wat)).exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    with pytest.raises(wasmtime.WasmtimeError) as trapped:
        start(store)
    assert not isinstance(trapped.value, wasmtime.ExitTrap)
    return str(trapped.value).splitlines()[0]


@pytest.mark.parametrize(
    "tools",
    [
        pytest.param(frozenset(), id="template-files-only"),
        # With scratch, path_open goes through fs_calls.py's guard, which once answered such a trap EINTR (27)
        # and let the guest run on.
        pytest.param(SCRATCH, id="scratch"),
    ],
)
@pytest.mark.parametrize("bad", list(BAD_CALLS))
def test_a_path_open_that_traps_in_wasi_ends_the_run_as_under_bare_wasmtime(
    runner: Runner, host: Host, tmp_path: Path, tools: frozenset[str], bad: str
) -> None:
    pointer, rights = BAD_CALLS[bad]
    wat = TRAPPING_OPEN.replace("PTR", pointer).replace("RIGHTS", rights)
    _bare_wasmtime_traps(wat, tmp_path / "bare")
    prepared = runner.sandbox.link(
        runner.sandbox.compile(bytes(wasmtime.wat2wasm(wat)), "scratch" in tools), tools, "trap@1.0.0", True
    )
    state = runner.state(prepared, b"", tools)
    state.spec.mounts = host.mounts.dirs
    finished = runner.sandbox.run(prepared, state)
    # Ended by the trap (no exit code), not by proc_exit with the errno the guest got instead.
    assert (finished.outcome, finished.trap, finished.exit_code) == (Outcome.FAILED, "error", 0), finished
