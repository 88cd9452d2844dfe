"""services/common/dir_claim.py without processes: flock locks belong to an open file, so two claims in
one process conflict exactly as two processes' claims do."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common import dir_claim
from tests.harness import REPO


def test_a_claimed_directory_is_refused_naming_its_holder_until_released(tmp_path: Path) -> None:
    first = dir_claim.claim(tmp_path / "data")  # made if missing
    with pytest.raises(dir_claim.DirInUse) as refused:
        dir_claim.claim(tmp_path / "data")
    assert refused.value.holder_pid == os.getpid()
    assert str(refused.value) == f"process {os.getpid()} is using {tmp_path / 'data'}"
    first.release()
    first.release()  # twice is harmless
    dir_claim.claim(tmp_path / "data").release()


def test_a_lock_file_left_by_a_dead_holder_is_no_claim(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text("999999\n")  # what a process killed with -9 leaves: the file, no flock
    claim = dir_claim.claim(tmp_path)
    assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
    claim.release()


def test_a_symlinked_lock_file_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("not ours")
    (tmp_path / ".lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError) as failed:
        dir_claim.claim(tmp_path)
    assert failed.value.errno == errno.ELOOP and (tmp_path / "elsewhere").read_text() == "not ours"


def test_a_pid_that_cannot_be_written_still_gives_the_claim(tmp_path: Path) -> None:
    # A full disk, simulated by a file size limit of 0 in a child process: the flock is taken, the pid write
    # fails (EFBIG). The pid is a hint for the message; the claim must hold, and hold its one descriptor.
    child = f"""
import resource, signal, sys
from pathlib import Path
from services.common import dir_claim
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
claim = dir_claim.claim(Path({str(tmp_path)!r}))
try:
    dir_claim.claim(Path({str(tmp_path)!r}))
except dir_claim.DirInUse as exc:
    print("held; holder", exc.holder_pid)
claim.release()
dir_claim.claim(Path({str(tmp_path)!r})).release()
print("released")
"""
    done = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "held; holder None\nreleased\n"
