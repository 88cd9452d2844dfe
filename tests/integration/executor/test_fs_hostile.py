"""The hostile file-system agents through a real executor process (its template-file cache, its run
directories): fs-escape, aimed at a canary file, gets every errno its unit test names, and neither the
executor's cached copy of the template file nor the registry's blob nor the canary changes; fs-isolation's
second run of the same template finds nothing the first one left; fs-fd-flood stops at its run's bound on
descriptors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc

from afctl.examples import catalogue
from services.executor.sandbox.wasi_files import MAX_DESCRIPTORS
from tests.integration.executor.conftest import Executor, Stack, finished, output
from tests.unit.executor.test_fs_hostile import ESCAPE_CHECKS, report

CANARY = b"a host file no run may reach\n"


def _fingerprint(path: Path) -> tuple[str, int, int, int, int]:
    """Content, mode, link count, modification and change time: what a write, link, rename or chmod moves."""
    info = path.stat()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest, info.st_mode, info.st_nlink, info.st_mtime_ns, info.st_ctime_ns


def test_fs_escape_through_the_executor_changes_nothing_on_the_host(executor: Executor, stack: Stack) -> None:
    canary = stack.workdir / "fs-escape-canary" / "canary.txt"
    canary.parent.mkdir(exist_ok=True)
    canary.write_bytes(CANARY)
    (example,) = [t for t in catalogue("hostile") if t.name == "hostile-fs-escape"]
    ((guest, secret),) = example.files().items()
    digest = hashlib.sha256(secret).hexdigest()
    blobs = [p for p in (stack.workdir / "registry-data").rglob(digest) if p.is_file()]
    assert blobs, "the registry stores the template file by digest"

    def escape() -> bytes:
        events, code, details = executor.run_retrying("hostile-fs-escape", data=f"{canary}\n".encode())
        assert code == grpc.StatusCode.OK, details
        assert finished(events).exit_code == 0
        return output(events)

    assert escape().decode() == report(ESCAPE_CHECKS)  # this first run builds the executor's file tree
    (cached,) = (stack.workdir / "executor-data" / "files" / "trees").glob(f"*/*{guest.removeprefix('/data')}")
    before = (_fingerprint(cached), [_fingerprint(b) for b in blobs], _fingerprint(canary))
    assert escape().decode() == report(ESCAPE_CHECKS)  # the second one runs on the cached, shared tree
    assert (_fingerprint(cached), [_fingerprint(b) for b in blobs], _fingerprint(canary)) == before
    assert cached.read_bytes() == secret and canary.read_bytes() == CANARY


def test_a_later_run_finds_nothing_an_earlier_run_of_the_template_left(executor: Executor) -> None:
    events, code, details = executor.run_retrying("hostile-fs-isolation", data=b"P")
    assert code == grpc.StatusCode.OK and output(events).endswith(b"passed 6/6\n"), (details, output(events))
    events, code, details = executor.run_retrying("hostile-fs-isolation", data=b"E")
    assert code == grpc.StatusCode.OK, details
    assert output(events).endswith(b"passed 7/7\n"), output(events).decode()
    assert finished(events).exit_code == 0


def test_a_descriptor_flood_is_refused_with_emfile_at_the_run_s_bound(executor: Executor) -> None:
    """Through the executor process (its own open-files limit, its server and stores beside the run): the
    flood stops at the run's bound with EMFILE, and the executor serves the next run."""
    events, code, details = executor.run_retrying("hostile-fs-fd-flood", data=b"F")
    assert code == grpc.StatusCode.OK, details
    assert output(events) == f"opened {MAX_DESCRIPTORS - 5}, last errno 33\n".encode()  # stdio, `/`, `/scratch`
    assert finished(events).exit_code == 0
    events, code, details = executor.run_retrying("echo-upper", data=b"still serving")
    assert code == grpc.StatusCode.OK and output(events) == b"STILL SERVING", (details, output(events))
