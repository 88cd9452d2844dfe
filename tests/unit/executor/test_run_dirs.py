"""The start-up sweep of the executor's run root (services/executor/run_dirs.py): everything a killed
process left there goes, nothing outside it is touched (symlinks are unlinked, never followed), and a
tree deeper than Python's recursion limit is no problem."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from services.executor.run_dirs import sweep


def test_a_missing_root_is_made(tmp_path: Path) -> None:
    assert sweep(tmp_path / "data" / "runs") == 0
    assert (tmp_path / "data" / "runs").is_dir()


def test_leftovers_go_and_nothing_outside_the_root_is_touched(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "file").write_bytes(b"host data")
    root = tmp_path / "runs"
    run = root / "af-run-abc123"
    (run / "scratch" / "sub").mkdir(parents=True)
    (run / "scratch" / "sub" / "blob").write_bytes(b"x" * 10_000)
    (run / "escape").symlink_to(outside)  # a guest's symlink pointing out of its directory
    (run / "scratch" / "file-link").symlink_to(outside / "keep" / "file")
    (root / "link-to-outside").symlink_to(outside / "keep")  # a symlink directly under the root
    (root / "stray-file").write_bytes(b"")
    assert sweep(root) == 3
    assert list(root.iterdir()) == []
    assert (outside / "keep" / "file").read_bytes() == b"host data"


def test_a_tree_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    depth = sys.getrecursionlimit() + 200
    fd = os.open(tmp_path, os.O_RDONLY)
    try:  # built one level at a time through descriptors: the path is longer than PATH_MAX
        for name in ["runs", "af-run-deep", *["d"] * depth]:
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    assert sweep(root) == 1
    assert list(root.iterdir()) == []


def test_a_root_that_is_a_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_bytes(b"keep")
    root = tmp_path / "runs"
    root.symlink_to(elsewhere)
    sweep(root)
    assert root.is_dir() and not root.is_symlink()
    assert (elsewhere / "precious").read_bytes() == b"keep"
