"""WASI clocks and random follow the manifest's `clock` and `random` grants (docs/tools-abi.md): without
the grant each call answers ENOTCAPABLE (76); with it the call works, and random_get keeps to the
random tool's 64 KiB cap (EINVAL above it). Sleeping (poll_oneoff) needs no grant."""

from __future__ import annotations

import struct

import pytest

from services.executor.events import Outcome
from tests.unit.executor.conftest import Runner

ENOTCAPABLE, EINVAL = 76, 28

# stdout: the errno of clock_time_get(REALTIME), clock_res_get(MONOTONIC), random_get(16 bytes),
# random_get(64 KiB), random_get(64 KiB + 1) and poll_oneoff on a 1 ns relative clock.
PROBE = """(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $t (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $res (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (func (export "_start")
    (i32.store (i32.const 100) (call $t (i32.const 0) (i64.const 1) (i32.const 200)))
    (i32.store (i32.const 104) (call $res (i32.const 1) (i32.const 200)))
    (i32.store (i32.const 108) (call $r (i32.const 1024) (i32.const 16)))
    (i32.store (i32.const 112) (call $r (i32.const 1024) (i32.const 65536)))
    (i32.store (i32.const 116) (call $r (i32.const 1024) (i32.const 65537)))
    (i64.store (i32.const 300) (i64.const 7)) (i32.store8 (i32.const 308) (i32.const 0))
    (i32.store (i32.const 316) (i32.const 1)) (i64.store (i32.const 324) (i64.const 1))
    (i32.store (i32.const 120) (call $poll (i32.const 300) (i32.const 400) (i32.const 1) (i32.const 500)))
    (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 24))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def errnos(runner: Runner, tools: frozenset[str]) -> tuple[int, ...]:
    out = runner.run(PROBE, tools=tools)
    assert out.finished.outcome is Outcome.SUCCEEDED, out.finished
    return struct.unpack("<6I", out.output)


@pytest.mark.parametrize(
    ("tools", "clock", "random"),
    [
        (frozenset(), (ENOTCAPABLE, ENOTCAPABLE), (ENOTCAPABLE, ENOTCAPABLE, ENOTCAPABLE)),
        (frozenset({"clock"}), (0, 0), (ENOTCAPABLE, ENOTCAPABLE, ENOTCAPABLE)),
        (frozenset({"random"}), (ENOTCAPABLE, ENOTCAPABLE), (0, 0, EINVAL)),
        (frozenset({"clock", "random"}), (0, 0), (0, 0, EINVAL)),
        (frozenset({"scratch"}), (ENOTCAPABLE, ENOTCAPABLE), (ENOTCAPABLE, ENOTCAPABLE, ENOTCAPABLE)),
    ],
)
def test_clock_and_random_follow_the_grants(
    runner: Runner, tools: frozenset[str], clock: tuple[int, int], random: tuple[int, int, int]
) -> None:
    got = errnos(runner, tools)
    assert got[:2] == clock
    assert got[2:5] == random
    assert got[5] == 0  # sleeping reads no clock: always allowed


def test_a_refused_random_get_writes_nothing(runner: Runner) -> None:
    wat = """(module
      (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 4)
      (func (export "_start")
        (drop (call $r (i32.const 1024) (i32.const 70000)))
        (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 70000))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""
    for tools in (frozenset(), frozenset({"random"})):
        out = runner.run(wat, tools=tools, max_output_bytes=1 << 20)
        assert out.output == bytes(70000), tools
