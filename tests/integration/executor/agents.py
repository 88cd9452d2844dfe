"""Agents and templates that only these tests publish: tool probes written in WAT, children that grant
the loopback HTTP servers, and small modules with distinct digests for cache and verification tests."""

from __future__ import annotations

import json

import wasmtime

# log (info and warn), random_fill (32 bytes, then one over the 64 KiB cap), clock_now_ms, then stdout gets
# the 56-byte record struct "<iiiiq32s": log_info, log_warn, random_ok, random_too_big, now_ms, random bytes.
TOOLS_PROBE_WAT = r"""
(module
  (import "agentfactory" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "agentfactory" "clock_now_ms" (func $clock (result i64)))
  (import "agentfactory" "random_fill" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 512) "tools-probe: hello")
  (data (i32.const 544) "tools-probe: careful")
  (func (export "_start")
    (i32.store (i32.const 64) (call $log (i32.const 0) (i32.const 512) (i32.const 18)))
    (i32.store (i32.const 68) (call $log (i32.const 1) (i32.const 544) (i32.const 20)))
    (i32.store (i32.const 72) (call $random (i32.const 88) (i32.const 32)))
    (i32.store (i32.const 76) (call $random (i32.const 0) (i32.const 65537)))
    (i64.store (i32.const 80) (call $clock))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 56))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""

# Calls clock_now_ms forever: only max_tool_calls (or fuel) ends it.
TOOL_SPAM_WAT = r"""
(module
  (import "agentfactory" "clock_now_ms" (func $clock (result i64)))
  (memory (export "memory") 1)
  (func (export "_start") (loop $again (drop (call $clock)) (br $again))))
"""

# Uses WASI preview1 files under the first preopen (fd 3: the run's `/`). stdout: one byte, the errno of opening
# note.txt before creating it (44 ENOENT: every run starts with an empty directory); one byte, the errno
# of creating ../escape (63 EPERM: no way out of the preopen); then what it wrote to note.txt and read back.
# Without a preopen the first real open fails with EBADF (8) and it exits with 10 + 8 = 18.
SCRATCH_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "note.txt")
  (data (i32.const 120) "../escape")
  (data (i32.const 200) "kept in scratch\n")
  (func $try_open (param $path i32) (param $len i32) (param $oflags i32) (result i32)
    (call $path_open (i32.const 3) (i32.const 0) (local.get $path) (local.get $len) (local.get $oflags)
      (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 8)))
  (func $open (param $oflags i32) (result i32)
    (local $err i32)
    (local.set $err (call $try_open (i32.const 100) (i32.const 8) (local.get $oflags)))
    (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 10) (local.get $err)))))
    (i32.load (i32.const 8)))
  (func (export "_start")
    (local $fd i32)
    (i32.store8 (i32.const 1024) (call $try_open (i32.const 100) (i32.const 8) (i32.const 0)))
    (i32.store8 (i32.const 1025) (call $try_open (i32.const 120) (i32.const 9) (i32.const 1)))
    (local.set $fd (call $open (i32.const 9)))
    (i32.store (i32.const 0) (i32.const 200))
    (i32.store (i32.const 4) (i32.const 16))
    (if (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 12))
      (then (call $proc_exit (i32.const 3))))
    (drop (call $fd_close (local.get $fd)))
    (local.set $fd (call $open (i32.const 0)))
    (i32.store (i32.const 0) (i32.const 1026))
    (i32.store (i32.const 4) (i32.const 512))
    (if (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 12))
      (then (call $proc_exit (i32.const 4))))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.add (i32.const 2) (i32.load (i32.const 12))))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))))
"""


def say_wat(text: str) -> str:
    """A module that writes `text` to stdout: a distinct digest per text."""
    data = text.encode()
    return f"""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{text}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const {len(data)}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def wasm(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm(wat))


def manifest(name: str, version: str = "1.0.0", **fields: object) -> bytes:
    return json.dumps({"name": name, "version": version, "labels": {"suite": "executor-it"}, **fields}).encode()


LIMITS = {"fuel": 50_000_000, "memory_bytes": 1 << 20, "timeout_ms": 2000, "max_output_bytes": 65536}

# One WASI poll_oneoff asking to sleep an hour: only its 30 s deadline or a cancel can end it.
SLEEP_HOUR_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))
"""


def extra_templates(fast_host: str, slow_host: str) -> list[tuple[bytes, bytes | None]]:
    """(manifest JSON, module) pairs published after the examples; parents come first."""
    return [
        (manifest("kv-counter-web", extends="kv-counter@1.0.0", http_hosts=[fast_host]), None),
        (manifest("slow-tool-web", extends="hostile-slow-tool@1.0.0", http_hosts=[slow_host]), None),
        (manifest("tools-probe", tools=["log", "clock", "random"], limits=LIMITS), wasm(TOOLS_PROBE_WAT)),
        (
            manifest("tool-spam", tools=["clock"], limits={**LIMITS, "max_tool_calls": 5}),
            wasm(TOOL_SPAM_WAT),
        ),
        (manifest("scratch-probe", tools=["scratch"], limits=LIMITS), wasm(SCRATCH_WAT)),
        (manifest("scratch-ungranted", limits=LIMITS), wasm(SCRATCH_WAT)),
        (manifest("cache-probe", limits=LIMITS), wasm(say_wat("cache probe"))),
        (manifest("sleep-hour", limits={**LIMITS, "timeout_ms": 30_000}), wasm(SLEEP_HOUR_WAT)),
    ]
