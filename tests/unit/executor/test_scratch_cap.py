"""The cap on a run's own file system (the `scratch` grant; docs/tools-abi.md, sandbox/scratch.py): each
way a guest can put bytes or entries on the host's disk — one big file, many empty files, a sparse file
written one byte per block, a tree as deep as the entry cap — ends in ENOSPC (51) at the cap, the run is
RESOURCE_EXHAUSTED with LIMIT_SCRATCH, and the run's directory is removed. Each hostile agent prints how
far it got: had the cap not held, it would have gone on writing until its deadline (TIMED_OUT)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from services.executor.events import LimitKind, Outcome
from services.executor.sandbox.scratch import BLOCK, MAX_BYTES, MAX_ENTRIES, ScratchBudget, remove_tree, usage
from tests.unit.executor.conftest import Runner, wasm_file

SCRATCH = frozenset({"scratch"})
ENOSPC = 51

# agent -> what it must have printed (bytes or entries it got onto the disk before ENOSPC)
HOSTILE: dict[str, Callable[[int], bool]] = {
    "big-file": lambda n: MAX_BYTES - 256 * 1024 <= n <= MAX_BYTES,
    "many-files": lambda n: n == MAX_ENTRIES - 1,  # `/scratch` is the first entry
    # one byte per 64 KiB: a block each, so far fewer bytes than the cap
    "sparse-seek": lambda n: MAX_BYTES // BLOCK - 64 <= n < MAX_BYTES // BLOCK,
    "deep-dirs": lambda n: n == MAX_ENTRIES - 1,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_each_way_past_the_cap_ends_in_enospc_and_limit_scratch(runner: Runner, name: str) -> None:
    prepared = runner.prepare(wasm_file(f"hostile-scratch-{name}"), SCRATCH)
    state = runner.state(prepared, tools=SCRATCH, fuel=2_000_000_000, timeout_ms=120_000)
    done = runner.sandbox.run(prepared, state)
    out = b"".join(e.data for e in state.events if type(e).__name__ == "Output")  # type: ignore[attr-defined]
    assert done.outcome is Outcome.RESOURCE_EXHAUSTED and done.limit is LimitKind.SCRATCH, (done, out)
    assert done.exit_code == ENOSPC and "file system is full" in done.reason, done.reason
    assert HOSTILE[name](int(out)), out
    assert state.scratch is not None and not os.path.exists(state.scratch.root)  # removed after the run


WRITE_THEN_EXIT = """(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $unlink (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 100) "a")
  ;; write `blocks` x 64 KiB to /a (created) and close it; the first error (0: none)
  (func $fill (param $blocks i32) (result i32) (local $fd i32) (local $err i32)
    (local.set $err (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 9)
      (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 16)))
    (if (local.get $err) (then (return (local.get $err))))
    (local.set $fd (i32.load (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 65536)) (i32.store (i32.const 4) (i32.const 65536))
    (block $done (loop $again
      (br_if $done (i32.eqz (local.get $blocks)))
      (local.set $err (call $write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 24)))
      (br_if $done (local.get $err))
      (local.set $blocks (i32.sub (local.get $blocks) (i32.const 1)))
      (br $again)))
    (drop (call $close (local.get $fd)))
    (local.get $err))
  (func (export "_start")
    ;; 3/4 of the cap three times over, deleting in between: charges add up to more than the cap,
    ;; what is on disk never does, so every write must be allowed
    (call $exit (i32.or (i32.or
      (call $fill (i32.const 192))
      (i32.or (call $unlink (i32.const 3) (i32.const 100) (i32.const 1)) (call $fill (i32.const 192))))
      (i32.or (call $unlink (i32.const 3) (i32.const 100) (i32.const 1)) (call $fill (i32.const 192)))))))
"""


def test_space_freed_by_the_guest_is_counted_again(runner: Runner) -> None:
    """Charges over-count (a deleted file stays charged), so a charge that does not fit re-measures the
    directory: a program that deletes what it wrote can write as much again, over and over."""
    out = runner.run(WRITE_THEN_EXIT, tools=SCRATCH)
    assert out.finished.outcome is Outcome.SUCCEEDED, out.finished


UNLINK_KEEP_OPEN = """(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $unlink (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 100) "a")
  ;; 64 times: create /a, write 1 MiB to it, unlink it and keep the descriptor open (64 MiB held)
  (func (export "_start") (local $round i32) (local $n i32) (local $fd i32) (local $err i32)
    (i32.store (i32.const 0) (i32.const 65536)) (i32.store (i32.const 4) (i32.const 65536))
    (loop $rounds
      (local.set $err (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 1)
        (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 16)))
      (if (local.get $err) (then (call $exit (local.get $err))))
      (local.set $fd (i32.load (i32.const 16)))
      (local.set $n (i32.const 0))
      (loop $blocks
        (local.set $err (call $write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 24)))
        (if (local.get $err) (then (call $exit (local.get $err))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br_if $blocks (i32.lt_u (local.get $n) (i32.const 16))))
      (drop (call $unlink (i32.const 3) (i32.const 100) (i32.const 1)))
      (local.set $round (i32.add (local.get $round) (i32.const 1)))
      (br_if $rounds (i32.lt_u (local.get $round) (i32.const 64))))
    (call $exit (i32.const 0))))
"""


def test_files_deleted_but_held_open_still_count(runner: Runner) -> None:
    """A deleted file whose descriptor stays open keeps its blocks: unlinking what it wrote must not let a
    run write as much again."""
    out = runner.run(UNLINK_KEEP_OPEN, tools=SCRATCH, timeout_ms=120_000)
    assert out.finished.limit is LimitKind.SCRATCH and out.finished.exit_code == ENOSPC, out.finished


def test_stdout_is_not_charged_to_the_file_system(runner: Runner) -> None:
    """A run whose disk is full can still write its output."""
    wat = WRITE_THEN_EXIT.replace(
        '(func (export "_start")',
        """(func (export "_start")
    (drop (call $fill (i32.const 1000)))  ;; fills the disk: ENOSPC at 16 MiB
    (i32.store (i32.const 8) (i32.const 300)) (i32.store (i32.const 12) (i32.const 3))
    (i32.store (i32.const 300) (i32.const 0x0a6b6f))  ;; "ok\\n"
    (call $exit (call $write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 24))))
  (func $unused""",
    )
    out = runner.run(wat, tools=SCRATCH)
    assert out.finished.outcome is Outcome.SUCCEEDED and out.output == b"ok\n", out.finished


def test_usage_counts_blocks_not_lengths(tmp_path: Path) -> None:
    base_bytes, base_entries = usage(str(tmp_path))
    with open(tmp_path / "sparse", "wb") as f:
        f.seek(1 << 30)
        f.write(b"x")  # a 1 GiB file holding one block
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "link").symlink_to("/etc/passwd")  # counted as an entry, never followed
    found_bytes, entries = usage(str(tmp_path))
    assert entries == base_entries + 3
    assert found_bytes - base_bytes < 64 * 1024, found_bytes


def _deep(root: Path, levels: int) -> None:
    """`levels` nested directories, made relative to their parent (the path outgrows PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d" * 200, dir_fd=fd)
            child = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as f:
            f.write(b"x" * 5000)
    finally:
        os.close(fd)


def test_a_tree_too_deep_for_shutil_rmtree_is_measured_and_removed(tmp_path: Path) -> None:
    victim = tmp_path / "deep"
    victim.mkdir()
    _deep(victim, 1500)
    with pytest.raises(RecursionError):  # why the sandbox does not use it
        shutil.rmtree(victim)
    _, entries = usage(str(victim))
    assert entries == 1501
    remove_tree(str(victim))
    assert not victim.exists()
    remove_tree(str(victim))  # already gone: fine


def test_a_charge_that_does_not_fit_is_refused_only_after_measuring(tmp_path: Path) -> None:
    budget = ScratchBudget(str(tmp_path), max_bytes=64 * BLOCK, max_entries=8)
    assert budget.admit(40 * BLOCK, 1)
    # 40 + 40 blocks charged do not fit, but the directory holds nothing: measured, then admitted
    assert budget.admit(40 * BLOCK, 1) and budget.refusals == 0
    (tmp_path / "big").write_bytes(b"x" * 60 * BLOCK)  # now the disk really holds most of the cap
    assert not budget.admit(40 * BLOCK, 0) and budget.refusals == 1
    assert budget.admit(2 * BLOCK, 0)  # what still fits is admitted
