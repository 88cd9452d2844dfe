"""The executor's run directories and scratch cap on a real process: an executor SIGKILLed while an agent
writes to its scratch directory leaves that directory behind, and the next start-up removes it (and
nothing outside its run root) before SERVING; runs work after it. A lowered AF_EXECUTOR_SCRATCH_BYTES is
the cap a real run meets, and a lowered AF_EXECUTOR_MAX_DESCRIPTORS the descriptor bound; a bad value is
one stderr line and exit code 2."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from afctl.client import Client, Endpoints
from agentfactory.executor.v1 import executor_service_pb2 as pb
from tests.harness import REPO, ServiceProcess
from tests.integration.conftest import start_ready
from tests.integration.executor.agents import LIMITS, SCRATCH_WAT, manifest, wasm
from tests.integration.executor.conftest import EXECUTOR_SERVICE, Executor, executor_env, finished, output, write_policy

SCRATCH_BYTES = 256 * 1024  # lowered from 16 MiB for this executor
MAX_DESCRIPTORS = 8  # lowered from 256: stdio and the preopens hold most of them

# Opens (creates) `name` in the run's `/` (fd 3); the open's errno + 10 is the exit code if it fails.
_OPEN = """
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const {length}) (i32.const 9)
          (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 8))
      (then (call $proc_exit (i32.const 10))))
    (local.set $fd (i32.load (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 4096))
    (i32.store (i32.const 4) (i32.const 4096))"""

_IMPORTS = """
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)"""

# Rewrites the first 4 KiB of /blob until its deadline: an agent busy writing to scratch when killed.
WRITER_WAT = f"""(module {_IMPORTS}
  (data (i32.const 100) "blob")
  (func (export "_start")
    (local $fd i32) {_OPEN.format(length=4)}
    (loop $again
      (drop (call $fd_seek (local.get $fd) (i64.const 0) (i32.const 0) (i32.const 16)))
      (if (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 12))
        (then (call $proc_exit (i32.const 3))))
      (br $again))))"""

# Appends 4 KiB blocks to /fill until a write fails or 1 MiB is written; stdout: the bytes written (u32
# little-endian); exit 1 after a failed write (so a refusal by the cap ends the run as SCRATCH), else 0.
FILLER_WAT = f"""(module {_IMPORTS}
  (data (i32.const 100) "fill")
  (func (export "_start")
    (local $fd i32) (local $total i32) (local $err i32) {_OPEN.format(length=4)}
    (block $done
      (loop $again
        (br_if $done (i32.ge_u (local.get $total) (i32.const 1048576)))
        (local.set $err (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 12)))
        (br_if $done (local.get $err))
        (local.set $total (i32.add (local.get $total) (i32.load (i32.const 12))))
        (br $again)))
    (i32.store (i32.const 24) (local.get $total))
    (i32.store (i32.const 32) (i32.const 24))
    (i32.store (i32.const 36) (i32.const 4))
    (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))
    (if (local.get $err) (then (call $proc_exit (i32.const 1))))))"""

# Opens /fill again and again without closing until an open fails; stdout: the opens that worked and the
# failed one's errno (two u32 little-endian).
OPENER_WAT = f"""(module {_IMPORTS}
  (data (i32.const 100) "fill")
  (func (export "_start")
    (local $opened i32) (local $err i32)
    (block $done
      (loop $again
        (br_if $done (i32.ge_u (local.get $opened) (i32.const 1000)))
        (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 1)
          (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 8)))
        (br_if $done (local.get $err))
        (local.set $opened (i32.add (local.get $opened) (i32.const 1)))
        (br $again)))
    (i32.store (i32.const 24) (local.get $opened))
    (i32.store (i32.const 28) (local.get $err))
    (i32.store (i32.const 32) (i32.const 24))
    (i32.store (i32.const 36) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))))"""


@dataclass
class Node:
    executor: ServiceProcess
    runs: Path  # its run root: AF_DATA_DIR/runs


@pytest.fixture(scope="module")
def node(workdir: Path, signer: ServiceProcess) -> Iterator[Node]:
    policy = write_policy(workdir / "policy.yaml", [])
    with ServiceProcess("registry", workdir, {"AF_POLICY_FILE": str(policy), "AF_SIGNER_ADDR": signer.addr}) as reg:
        with Client(Endpoints(reg.addr, signer.addr, reg.addr)) as publisher:
            slow = {**LIMITS, "fuel": 20_000_000_000, "timeout_ms": 30_000}
            publisher.publish(manifest("scratch-writer", tools=["scratch"], limits=slow), wasm(WRITER_WAT))
            publisher.publish(manifest("scratch-filler", tools=["scratch"], limits=LIMITS), wasm(FILLER_WAT))
            publisher.publish(manifest("scratch-probe", tools=["scratch"], limits=LIMITS), wasm(SCRATCH_WAT))
            publisher.publish(manifest("scratch-opener", tools=["scratch"], limits=LIMITS), wasm(OPENER_WAT))
        env = executor_env(
            reg,
            signer,
            policy,
            AF_EXECUTOR_SCRATCH_BYTES=str(SCRATCH_BYTES),
            AF_EXECUTOR_MAX_DESCRIPTORS=str(MAX_DESCRIPTORS),
        )
        executor = start_ready(ServiceProcess("executor", workdir, env), EXECUTOR_SERVICE)
        try:
            yield Node(executor, workdir / "executor-data" / "runs")
        finally:
            executor.stop()


def test_a_lowered_scratch_cap_is_the_cap_a_run_meets(node: Node) -> None:
    events, code, details = Executor(node.executor.addr).run("scratch-filler")
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    done = finished(events)
    assert (done.outcome, done.limit) == (pb.RUN_OUTCOME_RESOURCE_EXHAUSTED, pb.LIMIT_SCRATCH), done
    assert f"at most {SCRATCH_BYTES} bytes" in done.reason, done.reason
    (written,) = struct.unpack("<I", output(events))
    assert SCRATCH_BYTES // 2 < written < SCRATCH_BYTES, written  # 1 MiB fits the default 16 MiB
    assert list(node.runs.iterdir()) == []  # the run's directory went with the run


def test_a_lowered_descriptor_bound_is_the_bound_a_run_meets(node: Node) -> None:
    events, code, details = Executor(node.executor.addr).run("scratch-opener")
    assert code == grpc.StatusCode.OK, details
    opened, errno = struct.unpack("<II", output(events))
    # stdio (3) and the run's preopens take their share of the 8; with the default 256 it would open ~250.
    assert (errno, 0 < opened <= MAX_DESCRIPTORS - 4) == (33, True), (opened, errno)  # 33: EMFILE


def test_a_killed_executors_run_directories_are_swept_at_start_up(node: Node, workdir: Path) -> None:
    outside = workdir / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"not the executor's")
    executor = Executor(node.executor.addr)
    ended: list[grpc.StatusCode] = []
    call = threading.Thread(target=lambda: ended.append(executor.run("scratch-writer", timeout=120)[1]))
    call.start()
    # Until the agent has written to its scratch file (no time bound: the run's own 30 s deadline and the
    # call ending are what stop a wait that would never succeed).
    blobs: list[Path] = []
    while not any(b.stat().st_size == 4096 for b in blobs):
        assert call.is_alive() and node.executor.alive(), (ended, node.executor.logs()[-3000:])
        blobs = [b for b in node.runs.glob("af-run-*/blob") if b.exists()]
        time.sleep(0.01)
    node.executor.kill()
    call.join()
    assert ended != [grpc.StatusCode.OK]
    left = blobs[0].parent
    assert left.exists() and (left / "blob").exists()  # the crash left it behind
    (node.runs / "escape").symlink_to(outside)  # and something that must not be followed
    (left / "scratch" / "out").symlink_to(outside / "keep")

    start_ready(node.executor, EXECUTOR_SERVICE)  # swept before it turns SERVING
    assert list(node.runs.iterdir()) == []
    assert (outside / "keep").read_bytes() == b"not the executor's"
    swept = [line for line in node.executor.logs().splitlines() if '"msg": "stale run directories removed"' in line]
    assert swept and swept[-1].endswith('"removed": 2}'), swept  # the run's directory and the symlink

    events, code, details = executor.run("scratch-probe")
    assert code == grpc.StatusCode.OK, details
    assert finished(events).outcome == pb.RUN_OUTCOME_SUCCEEDED and output(events)[2:] == b"kept in scratch\n"
    assert list(node.runs.iterdir()) == []


def test_a_bad_scratch_setting_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    proc = ServiceProcess("executor", tmp_path, {"AF_EXECUTOR_SCRATCH_BYTES": "4096"})
    result = subprocess.run(
        [sys.executable, "-m", "services.executor"], cwd=REPO, env=proc.env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("executor: configuration error: AF_EXECUTOR_SCRATCH_BYTES must be between")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
