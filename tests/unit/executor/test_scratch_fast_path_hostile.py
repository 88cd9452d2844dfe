"""A hostile guest against the scratch cap's fast path (sandbox/scratch_rewrite.py, fs_calls.FastGuard): each
attack runs the same guest twice, compiled for the host path (every write charged by a host function) and
routed (writes charged in wasm against a prepaid allowance), and both runs must end alike — outcome, limit,
exit code (the errno that stopped the guest) and every byte of output — with neither holding more than the
cap. A difference is a hole in one of them: the guard trapping where the host answered an errno, a sum that
wraps, a write let through past the cap, output that escapes the output cap or goes missing. Then the
modules that must be refused (or left alone) rather than crash the process."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import wasmtime

from services.common.errors import FailedPrecondition
from services.executor.events import LimitKind, Outcome
from services.executor.sandbox import Sandbox
from services.executor.sandbox.config import ScratchSettings
from services.executor.sandbox.fs_calls import SLOW_MODULE
from services.executor.sandbox.scratch import BLOCK
from services.executor.sandbox.scratch_rewrite import RESERVED_MODULE, route_writes
from tests.unit.executor.conftest import Runner

SCRATCH = frozenset({"scratch"})
# WASI errnos
EBADF, EFAULT, EINVAL, ENOSPC = 8, 21, 28, 51
SMALL_CAP = 600 * 1024

# The guest's helpers; its `_start` is BODY. Descriptors 3 and 4 are the preopens `/` and `/scratch`.
# $open k: creates /blobK (k = 0..2), returns its descriptor (exits 100 when it cannot);
# $iov at buf len: an iovec at `at`; $print fd v: v as 4 little-endian bytes on fd;
# $check e: exits with the errno e when it is not 0.
GUEST = """(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") PAGES)
  (data (i32.const 60000) "blob0blob1blob2")
  (func $open (param $k i32) (result i32)
    (if (call $path_open (i32.const 3) (i32.const 0)
          (i32.add (i32.const 60000) (i32.mul (local.get $k) (i32.const 5))) (i32.const 5)
          (i32.const 9) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 60100))
      (then (call $exit (i32.const 100))))
    (i32.load (i32.const 60100)))
  (func $iov (param $at i32) (param $buf i32) (param $len i32)
    (i32.store (local.get $at) (local.get $buf))
    (i32.store offset=4 (local.get $at) (local.get $len)))
  (func $print (param $fd i32) (param $v i32)
    (i32.store (i32.const 60200) (local.get $v))
    (call $iov (i32.const 60208) (i32.const 60200) (i32.const 4))
    (drop (call $write (local.get $fd) (i32.const 60208) (i32.const 1) (i32.const 60216))))
  (func $check (param $e i32)
    (if (local.get $e) (then (call $exit (local.get $e)))))
  (func (export "_start") (local $fd i32) (local $e i32) (local $i i32) (local $n i32)
    BODY))
"""


OPEN = "(local.set $fd (call $open (i32.const 0)))"


def guest(body: str, pages: int = 1) -> bytes:
    return bytes(wasmtime.wat2wasm(GUEST.replace("BODY", body).replace("PAGES", str(pages))))


@dataclass(frozen=True)
class End:
    outcome: Outcome
    limit: LimitKind | None
    exit_code: int | None
    output: bytes


def both(runner: Runner, wasm: bytes, **lim: int) -> End:
    """Run `wasm` on the host path and routed; assert they end alike and within the cap; the end."""
    sandbox = runner.sandbox
    host = sandbox.link(sandbox.compile(wasm), SCRATCH, "t@1")
    routed = sandbox.link(sandbox.compile(wasm, scratch=True), SCRATCH, "t@1")
    assert not host.routed and routed.routed
    ends = []
    for prepared in (host, routed):
        state = runner.state(prepared, b"", SCRATCH, **lim)
        finished = sandbox.run(prepared, state)
        assert state.scratch is not None and state.scratch.used_bytes <= state.scratch.max_bytes
        output = b"".join(e.data for e in state.events if type(e).__name__ == "Output")  # type: ignore[attr-defined]
        assert finished.output_bytes == len(output) or finished.limit == LimitKind.OUTPUT
        ends.append(End(finished.outcome, finished.limit, finished.exit_code, output))
    assert ends[0] == ends[1], ends
    return ends[1]


def words(output: bytes) -> list[int]:
    return [int.from_bytes(output[i : i + 4], "little") for i in range(0, len(output), 4)]


@pytest.fixture
def small_cap(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> Runner:
    # The session's sandbox with a cap under one prepaid chunk (a second Sandbox would abort the process).
    monkeypatch.setattr(runner.sandbox, "scratch", ScratchSettings(max_bytes=SMALL_CAP))
    return runner


# --- the iovec array ------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1025, 0x2000_0000, 0xFFFF_FFFF], ids=["iov-max+1", "count*8-wraps", "u32-max"])
def test_more_iovecs_than_iov_max_is_einval(runner: Runner, count: int) -> None:
    # 0x2000_0000 iovecs are 2^32 bytes: an i32 product would wrap to an empty array.
    body = f"{OPEN} (call $exit (call $write (local.get $fd) (i32.const 0) (i32.const {count}) (i32.const 8)))"
    end = both(runner, guest(body))
    assert (end.outcome, end.exit_code) == (Outcome.FAILED, EINVAL), end


@pytest.mark.parametrize(
    ("iovs", "count"),
    [(65536 - 4, 1), (65536 - 8 * 1023, 1024), (0xFFFF_FFF8, 1), (0xFFFF_FFFF, 2)],
    ids=["straddles-the-end", "1024-straddling", "last-bytes-of-the-address-space", "wraps-the-address-space"],
)
def test_an_iovec_array_past_the_end_of_memory_is_efault_not_a_trap(runner: Runner, iovs: int, count: int) -> None:
    body = f"{OPEN} (call $exit (call $write (local.get $fd) (i32.const {iovs}) (i32.const {count}) (i32.const 8)))"
    end = both(runner, guest(body))
    assert (end.outcome, end.exit_code, end.limit) == (Outcome.FAILED, EFAULT, LimitKind.NONE), end


def test_an_iovec_array_made_valid_by_memory_grow_is_read_from_the_grown_memory(runner: Runner) -> None:
    # The guard reads memory.size at each call: EFAULT before the grow, the write after it.
    body = """(local.set $fd (call $open (i32.const 0)))
      (call $iov (i32.const 0) (i32.const 0) (i32.const 16))
      (call $print (i32.const 1) (call $write (local.get $fd) (i32.const 65536) (i32.const 1) (i32.const 8)))
      (drop (memory.grow (i32.const 1)))
      (call $iov (i32.const 65536) (i32.const 0) (i32.const 16))
      (call $print (i32.const 1) (call $write (local.get $fd) (i32.const 65536) (i32.const 1) (i32.const 65544)))
      (call $print (i32.const 1) (i32.load (i32.const 65544)))"""
    end = both(runner, guest(body))
    assert (end.outcome, words(end.output)) == (Outcome.SUCCEEDED, [EFAULT, 0, 16]), end


def test_a_nwritten_pointer_out_of_memory_ends_alike(runner: Runner) -> None:
    body = """(local.set $fd (call $open (i32.const 0)))
      (call $iov (i32.const 0) (i32.const 0) (i32.const 16))
      (call $print (i32.const 1) (call $write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 65534)))
      (call $print (i32.const 1)
        (call $pwrite (local.get $fd) (i32.const 0) (i32.const 1) (i64.const 0) (i32.const -1)))"""
    both(runner, guest(body))  # what WASI answers (an errno or a trap), the same on both paths


# --- the charge ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lengths",
    [[0x8000_0000, 0x8000_0000], [0xFFFF_FFFF] * 1024, [0xFFFF_F000, 0x2000]],
    ids=["sums-to-2^32", "1024-of-u32-max", "wraps-to-4-KiB"],
)
def test_lengths_summing_past_2_32_are_charged_in_full(runner: Runner, lengths: list[int]) -> None:
    # An i32 sum would wrap to (almost) nothing and be let through to WASI (EFAULT there); charged in
    # full they are ENOSPC before WASI is asked.
    sets = "".join(f"(call $iov (i32.const {8 * i}) (i32.const 0) (i32.const {n}))" for i, n in enumerate(lengths))
    write = f"(call $write (local.get $fd) (i32.const 0) (i32.const {len(lengths)}) (i32.const 9000))"
    body = f"{OPEN} {sets} (call $exit {write})"
    end = both(runner, guest(body))
    assert (end.outcome, end.limit, end.exit_code) == (Outcome.RESOURCE_EXHAUSTED, LimitKind.SCRATCH, ENOSPC), end


def test_1024_iovecs_over_the_same_memory_are_charged_each(runner: Runner) -> None:
    # 1024 iovecs over one 64 KiB page: 64 MiB asked with 64 KiB of memory, past the 16 MiB cap. Then 200 of
    # them (12.5 MiB) fit; wasmtime's WASI writes a file's first non-empty iovec only (64 KiB).
    body = """(local.set $fd (call $open (i32.const 0)))
      (block $done (loop $set
        (br_if $done (i32.ge_u (local.get $i) (i32.const 1024)))
        (call $iov (i32.add (i32.const 0) (i32.shl (local.get $i) (i32.const 3))) (i32.const 0) (i32.const 65536))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $set)))
      (call $print (i32.const 1) (call $write (local.get $fd) (i32.const 0) (i32.const 1024) (i32.const 9000)))
      (call $print (i32.const 1) (call $write (local.get $fd) (i32.const 0) (i32.const 200) (i32.const 9000)))
      (call $print (i32.const 1) (i32.load (i32.const 9000)))"""
    end = both(runner, guest(body))
    assert (end.outcome, words(end.output)) == (Outcome.SUCCEEDED, [ENOSPC, 0, 65536]), end


def test_sparse_writes_far_apart_stop_at_the_same_write(small_cap: Runner) -> None:
    # One byte every MiB (and one at 2^62, EFBIG): each allocates a block and is charged two blocks, so
    # the disk is measured along the way; the same count fits on both paths, and the next is ENOSPC.
    body = """(local.set $fd (call $open (i32.const 0)))
      (call $iov (i32.const 0) (i32.const 0) (i32.const 1))
      (call $print (i32.const 1)
        (call $pwrite (local.get $fd) (i32.const 0) (i32.const 1) (i64.const 0x4000000000000000) (i32.const 8)))
      (block $done (loop $again
        (local.set $e (call $pwrite (local.get $fd) (i32.const 0) (i32.const 1)
          (i64.shl (i64.extend_i32_u (local.get $n)) (i64.const 20)) (i32.const 8)))
        (br_if $done (local.get $e))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $again)))
      (call $print (i32.const 1) (local.get $n))
      (call $exit (local.get $e))"""
    end = both(small_cap, guest(body))
    assert (end.limit, end.exit_code) == (LimitKind.SCRATCH, ENOSPC), end
    assert words(end.output)[0] == 22 and 50 < words(end.output)[1] < SMALL_CAP // BLOCK, end


def test_writes_to_bad_descriptors_are_charged_alike(small_cap: Runner) -> None:
    # A write to a descriptor that is not open (or a directory) is charged before WASI answers EBADF; the
    # charges pass the cap many times over (7 MiB), the disk measured each time holds nothing: all answered
    # EBADF on both paths, none ENOSPC.
    body = """(call $iov (i32.const 0) (i32.const 0) (i32.const 4096))
      (block $done (loop $again
        (br_if $done (i32.ge_u (local.get $n) (i32.const 300)))
        (local.set $e (call $write (i32.add (i32.const 3) (i32.and (local.get $n) (i32.const 1)))
          (i32.const 0) (i32.const 1) (i32.const 8)))
        (br_if $done (i32.ne (local.get $e) (i32.const 8)))
        (local.set $e (call $write (i32.const 77) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br_if $done (i32.ne (local.get $e) (i32.const 8)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $again)))
      (call $print (i32.const 1) (local.get $n))
      (call $exit (local.get $e))"""
    end = both(small_cap, guest(body))
    assert (end.outcome, end.exit_code, words(end.output)) == (Outcome.FAILED, EBADF, [300]), end


# --- descriptors 0-2 and stdio moved ---------------------------------------------------------------------

# Writes 64 bytes on $fd until an errno; prints how many writes worked on descriptor 2 (stderr), exits.
FILL = """(call $iov (i32.const 0) (i32.const 0) (i32.const 64))
      (block $done (loop $again
        (local.set $e (call $write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br_if $done (local.get $e))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $again)))
      (call $exit (local.get $e))"""


def test_stdout_renumbered_onto_a_file_descriptor_is_still_output_and_capped(runner: Runner) -> None:
    # fd_renumber(1, file): stdout now sits above 2 and every write there is the run's output, which
    # stops at the output cap (not charged to the disk and never lost).
    body = f"{OPEN} (call $check (call $renumber (i32.const 1) (local.get $fd))) {FILL}"
    end = both(runner, guest(body), max_output_bytes=4096)
    assert (end.outcome, end.limit) == (Outcome.RESOURCE_EXHAUSTED, LimitKind.OUTPUT), end


def test_stdio_moved_back_and_forth_keeps_output_and_files_apart(runner: Runner) -> None:
    # stdout onto a file's number, printed on; stderr's number taken by a file, and back; at every step a
    # write is output exactly when it goes to stdout, and the file's writes never count as output.
    body = """(local.set $fd (call $open (i32.const 0)))
      (call $check (call $renumber (i32.const 1) (local.get $fd)))
      (call $print (local.get $fd) (i32.const 0x41414141))
      (local.set $n (call $open (i32.const 1)))
      (call $print (local.get $n) (i32.const 0x42424242))
      (call $check (call $renumber (local.get $fd) (local.get $n)))
      (call $print (local.get $n) (i32.const 0x43434343))
      (call $check (call $close (i32.const 2)))
      (local.set $e (call $open (i32.const 2)))
      (call $print (local.get $e) (i32.const 0x44444444))
      (call $check (call $renumber (local.get $n) (local.get $e)))
      (call $print (local.get $e) (i32.const 0x45454545))
      (local.set $fd (call $open (i32.const 0)))
      (call $print (local.get $fd) (i32.const 0x46464646))
      (call $print (local.get $e) (local.get $fd))"""
    end = both(runner, guest(body))
    assert end.outcome == Outcome.SUCCEEDED, end
    assert end.output[:12] == b"AAAACCCCEEEE", end


def test_a_file_opened_at_stdouts_number_is_charged(small_cap: Runner) -> None:
    # stdout closed and a file opened in its place: writes on descriptor 1 are disk, charged on both paths
    # (the guard hands descriptors 0-2 to the host) until the cap.
    body = f"""(call $check (call $close (i32.const 1)))
      (local.set $fd (call $open (i32.const 0)))
      (if (i32.ne (local.get $fd) (i32.const 1)) (then (call $exit (i32.const 101))))
      {FILL.replace("i32.const 64)", "i32.const 4096)")}"""
    end = both(small_cap, guest(body))
    assert (end.outcome, end.limit, end.exit_code, end.output) == (
        Outcome.RESOURCE_EXHAUSTED,
        LimitKind.SCRATCH,
        ENOSPC,
        b"",
    ), end


def test_a_file_renumbered_onto_stdout_is_charged_and_stdout_gone(small_cap: Runner) -> None:
    body = f"""(local.set $fd (call $open (i32.const 0)))
      (call $check (call $renumber (local.get $fd) (i32.const 1)))
      (local.set $fd (i32.const 1))
      {FILL.replace("i32.const 64)", "i32.const 4096)")}"""
    end = both(small_cap, guest(body))
    assert (end.limit, end.exit_code, end.output) == (LimitKind.SCRATCH, ENOSPC, b""), end


def test_a_start_function_writes_through_the_guard(small_cap: Runner) -> None:
    # A wasm start function runs inside instantiation, before the guard is in the stub's table; it is
    # detached (start.py), so its writes are charged like any other.
    wat = (
        GUEST.replace("BODY", "(call $print (i32.const 1) (i32.const 7))")
        .replace("PAGES", "1")
        .replace(
            '(func (export "_start")',
            f"(start $init) (func $init (local $fd i32) (local $e i32) (local $n i32) "
            f"(local.set $fd (call $open (i32.const 0))) {FILL.replace('i32.const 64)', 'i32.const 4096)')})"
            '\n  (func (export "_start")',
        )
    )
    end = both(small_cap, bytes(wasmtime.wat2wasm(wat)))
    assert (end.limit, end.exit_code) == (LimitKind.SCRATCH, ENOSPC), end


# --- modules that are refused or left alone, never a crash -----------------------------------------------


@pytest.mark.parametrize("module", [RESERVED_MODULE, SLOW_MODULE])
def test_a_guest_importing_our_write_modules_is_refused(sandbox: Sandbox, module: str) -> None:
    wat = f"""(module (import "{module}" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1) (func (export "_start")))"""
    wasm = bytes(wasmtime.wat2wasm(wat))
    for scratch in (False, True):
        with pytest.raises(FailedPrecondition):
            sandbox.link(sandbox.compile(wasm, scratch), SCRATCH, "t@1")


def test_a_module_importing_the_first_rewrites_memory_is_refused_at_link(sandbox: Sandbox) -> None:
    # What a `+scratch1` artifact (the first rewrite: the memory imported from the reserved module) holds, were
    # one ever loaded: refused, not linked to anything.
    wat = f"""(module (import "{RESERVED_MODULE}" "memory" (memory 1))
      (import "{RESERVED_MODULE}" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (export "memory" (memory 0)) (func (export "_start")))"""
    module = wasmtime.Module(sandbox.engine, bytes(wasmtime.wat2wasm(wat)))
    with pytest.raises(FailedPrecondition, match=r"agentfactory:scratch\.memory"):
        sandbox.link(module, SCRATCH, "t@1")


@pytest.mark.parametrize(
    "exports",
    [
        '(export "mem" (memory 0))',
        '(export "memory" (func 1))',
        '(export "memory" (global 0))',
        '(export "memory" (table 0))',
        "",
    ],
    ids=["memory-named-otherwise", "memory-is-a-function", "memory-is-a-global", "memory-is-a-table", "not-exported"],
)
def test_a_routed_module_without_a_memory_export_is_refused(sandbox: Sandbox, exports: str) -> None:
    # The guard is made over the guest's `memory` export: without one the module must not link at all.
    wat = f"""(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (memory 1) (global i32 (i32.const 0)) (table 1 funcref) (func (export "_start")) {exports})"""
    wasm = bytes(wasmtime.wat2wasm(wat))
    assert route_writes(wasm) != wasm
    with pytest.raises(FailedPrecondition, match="memory"):
        sandbox.link(sandbox.compile(wasm, scratch=True), SCRATCH, "t@1")


@pytest.mark.parametrize(
    ("memory", "refused"),
    [
        ('(import "env" "memory" (memory 1))', "env.memory"),
        ("(memory 1)", "export its linear memory"),
        ('(memory (export "memory") 1) (memory 1)', None),
    ],
    ids=["imported-from-env", "not-exported", "two-memories"],
)
def test_a_module_the_rewrite_leaves_alone_is_refused_or_takes_the_host_path(
    runner: Runner, memory: str, refused: str | None
) -> None:
    # Not routed (compile(scratch=True) returns it as it is): refused at link, or run on the host path, where
    # it ends as any module does (two memories: past the store's one).
    wat = f"""(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      {memory} (func (export "_start")))"""
    if refused is not None:
        with pytest.raises(FailedPrecondition, match=refused):
            runner.prepare(wat, SCRATCH)
        return
    assert not runner.prepare(wat, SCRATCH).routed
    out = runner.run(wat, tools=SCRATCH)
    assert out.finished.outcome != Outcome.SUCCEEDED, out.finished


def test_a_routed_write_import_of_the_wrong_type_is_refused_at_link(sandbox: Sandbox) -> None:
    wat = """(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))
      (memory (export "memory") 1) (func (export "_start")))"""
    wasm = bytes(wasmtime.wat2wasm(wat))
    with pytest.raises(FailedPrecondition, match="fd_write"):
        sandbox.link(sandbox.compile(wasm), SCRATCH, "t@1")
    with pytest.raises(FailedPrecondition, match="fd_write"):
        sandbox.link(sandbox.compile(wasm, scratch=True), SCRATCH, "t@1")


def test_a_module_importing_fd_write_twice_is_routed_and_both_work(small_cap: Runner) -> None:
    wat = GUEST.replace(
        '(import "wasi_snapshot_preview1" "proc_exit"',
        '(import "wasi_snapshot_preview1" "fd_write" (func $write2 (param i32 i32 i32 i32) (result i32)))\n'
        '  (import "wasi_snapshot_preview1" "proc_exit"',
    )
    body = OPEN + FILL.replace("i32.const 64)", "i32.const 4096)").replace("call $write", "call $write2", 1)
    wasm = bytes(wasmtime.wat2wasm(wat.replace("BODY", body).replace("PAGES", "1")))
    end = both(small_cap, wasm)
    assert (end.limit, end.exit_code) == (LimitKind.SCRATCH, ENOSPC), end


def test_linking_a_routed_module_allocates_nothing_it_declares(sandbox: Sandbox) -> None:
    # link() once checked a routed module by instantiating it in a throwaway store without the run's limits:
    # a table of 2^32 - 1 elements initialised to a function (32 GiB, written) was allocated then, on the
    # event loop's thread (or the allocation failed and the module was refused). It links as the host
    # path's module does, and a run then meets the store's table limit.
    wat = """(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (func $f) (table 0xFFFFFFFF funcref (ref.func $f))
      (memory (export "memory") 1) (func (export "_start")))"""
    wasm = bytes(wasmtime.wat2wasm(wat))
    assert sandbox.link(sandbox.compile(wasm), SCRATCH, "t@1").pre is not None
    assert sandbox.link(sandbox.compile(wasm, scratch=True), SCRATCH, "t@1").routed


def test_a_routed_module_past_the_table_limit_ends_as_the_host_paths(runner: Runner) -> None:
    wat = """(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (func $f) (table 1000000 funcref (ref.func $f))
      (memory (export "memory") 1) (func (export "_start")))"""
    end = both(runner, bytes(wasmtime.wat2wasm(wat)))
    assert end.outcome != Outcome.SUCCEEDED, end
