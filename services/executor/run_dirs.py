"""The executor's run root (AF_DATA_DIR/runs): where runs granted `scratch` get their private directory,
and its sweep at start-up.

A run's directory is removed when the run ends (sandbox/engine.py), but an executor killed mid-run
(SIGKILL, the OOM killer, a lost node with a persistent volume) leaves it behind, up to the scratch cap
each. `sweep` runs before the service is built, so before it turns SERVING: no run of this process exists
yet, and AF_DATA_DIR is this executor's alone (the service kit claims it before build: services/common/
dir_claim.py; as for the template files' trees, files.py), so every entry
under the root is a leftover. Nothing outside the root is touched: entries are looked at with lstat (a
symlink is unlinked, never followed) and directories are removed by the sandbox's remover, which walks
with one directory descriptor at a time opened with O_NOFOLLOW and no Python recursion (a guest can
build a tree as deep as its entry cap; shutil.rmtree raises RecursionError on about a thousand levels).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from services.common.logs import log_event
from services.executor.sandbox.scratch import remove_tree

log = logging.getLogger(__name__)


def sweep(root: Path) -> int:
    """Empty `root` (made if missing; replaced if it is not a real directory); the entries removed."""
    try:
        mode = os.lstat(root).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISDIR(mode):  # a symlink or a file where our directory goes
        os.unlink(root)
    root.mkdir(parents=True, exist_ok=True)
    with os.scandir(root) as found:
        names = [entry.name for entry in found]
    removed = 0
    for name in names:
        path = root / name
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                remove_tree(str(path))
            else:
                os.unlink(path)
        except OSError as exc:  # left for the next start-up; runs get directories of their own names
            log_event(log, "could not remove a stale run directory", logging.WARNING, path=name, error=str(exc))
            continue
        removed += 1
    if removed:
        log_event(log, "stale run directories removed", logging.WARNING, root=str(root), removed=removed)
    return removed
