"""stdin/stdout/stderr of a run.

Without a preopen, WASI's `fd_read`/`fd_write` are shadowed by the host functions below, defined raw
(`RAW_FD_*`: arguments read in place, no wasmtime-py trampoline): much cheaper per run than WASI files or
callbacks, and they let the output cap stop the guest at once.
Each call does bounded work whatever the guest asks: at most 1024 iovecs and MAX_BYTES_PER_CALL bytes
(a short write/read, which WASI allows and every libc retries), and only the bytes that can still be
kept are copied out of the guest (stdout up to the cap plus one byte to detect the overflow). So a call
returns to wasm, where the epoch deadline reaches the guest, within about a millisecond; no deadline
check of its own is needed (these two run on every run's path, so each saved step counts).
With a preopen (`scratch`, template files, or both) WASI owns the file descriptors: stdin is WASI's,
reading the input's bytes from memory, and `fd_write` is fs_calls.py's, which hands writes to stdout and
stderr (wherever `fd_renumber` moved them) to `fd_write` below and forwards the rest to WASI. So the output
cap stops such a run at once too, and its WASI context needs no output callbacks (they cost a run ~180 us).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime

from services.executor import guest
from services.executor.sandbox import ffi
from services.executor.sandbox.config import ScratchSettings
from services.executor.sandbox.hostcall import host_failure, stop_now
from services.executor.sandbox.scratch import ScratchBudget
from services.executor.sandbox.state import CURRENT, RunSpec, RunState
from services.executor.sandbox.wasi_files import MAX_DESCRIPTORS, Descriptors, RunFiles

if TYPE_CHECKING:
    from services.executor.sandbox.fs_calls import Guard

# WASI errno values (wasi_snapshot_preview1)
ERRNO_SUCCESS, ERRNO_BADF, ERRNO_FAULT, ERRNO_FBIG = 0, 8, 21, 22

MAX_BYTES_PER_CALL = 1024 * 1024  # one fd_write/fd_read moves at most this much; the rest is a short write

I32 = wasmtime.ValType.i32()


def fd_type() -> wasmtime.FuncType:
    """fd_write's and fd_read's type, new for each Linker: a FuncType is bound to the first Engine
    that uses it (see wasi._errno_func)."""
    return wasmtime.FuncType([I32, I32, I32, I32], [I32])


def fd_write(caller: wasmtime.Caller, fd: int, iovs: int, iovs_len: int, nwritten: int) -> int:
    run: RunState = CURRENT.run
    try:
        if fd not in (1, 2):
            return ERRNO_BADF
        vecs = guest.read_u32_pairs(caller, iovs, iovs_len)
        if vecs is None:
            return ERRNO_FAULT
        total = 0
        for ptr, length in vecs:
            length = min(length, MAX_BYTES_PER_CALL - total)
            if fd == 1:
                # Copy no more than can be kept: the cap, plus one byte that makes take_output trip.
                want = min(length, run.output_room() + 1)
                data = guest.read(caller, ptr, want)
                if data is None or (want < length and guest.read(caller, ptr + length - 1, 1) is None):
                    return ERRNO_FAULT
                if not run.take_output(data):
                    stop_now(caller, run)
                    return ERRNO_FBIG
            else:
                data = guest.read(caller, ptr, length)
                if data is None:
                    return ERRNO_FAULT
                run.take_stderr(data)
            total += length
            if total >= MAX_BYTES_PER_CALL:
                break
        return ERRNO_SUCCESS if guest.write_u32(caller, nwritten, total) else ERRNO_FAULT
    except BaseException as exc:
        return host_failure(caller, run, "fd_write", exc)


def fd_read(caller: wasmtime.Caller, fd: int, iovs: int, iovs_len: int, nread: int) -> int:
    run: RunState = CURRENT.run
    try:
        if fd != 0:
            return ERRNO_BADF
        vecs = guest.read_u32_pairs(caller, iovs, iovs_len)
        if vecs is None:
            return ERRNO_FAULT
        total = 0
        for ptr, length in vecs:
            length = min(length, MAX_BYTES_PER_CALL - total)
            data = run.read_input(length)
            if not guest.write(caller, ptr, length, data):
                return ERRNO_FAULT
            total += len(data)
            if len(data) < length or total >= MAX_BYTES_PER_CALL:
                break
        return ERRNO_SUCCESS if guest.write_u32(caller, nread, total) else ERRNO_FAULT
    except BaseException as exc:
        return host_failure(caller, run, "fd_read", exc)


def _raw(function: Callable[[wasmtime.Caller, int, int, int, int], int]) -> object:
    """`function` as a raw host function (ffi.define_raw): its four i32 arguments read in place, no
    wasmtime-py trampoline (which wraps every argument and result in a Val: ~25-30 us of a plain run's
    ~150 us went there, for the few stdio calls a run makes)."""

    def call(_env: object, caller_ptr: ffi.RawCaller, values: ffi.RawValues, _n: int) -> int:
        caller = ffi.wrap_caller(caller_ptr)
        try:
            values[0].i32 = function(caller, values[0].i32, values[1].i32, values[2].i32, values[3].i32)
        except BaseException:  # cannot happen (both catch everything); a raw callback must not raise
            values[0].i32 = ERRNO_FAULT
        finally:
            caller._invalidate()
        return 0

    return ffi.RawCallback(call)


# What a Linker without a preopen defines over WASI's fd_write and fd_read (they live as long as the
# process: Linkers hold pointers to them).
RAW_FD_WRITE = _raw(fd_write)
RAW_FD_READ = _raw(fd_read)


def configure_wasi(
    store: wasmtime.Store,
    spec: RunSpec,
    run: RunState,
    settings: ScratchSettings,
    guard: Guard,
    max_descriptors: int = MAX_DESCRIPTORS,
) -> Path | None:
    """Give the store its WASI context; returns the run's private directory when `scratch` is granted.
    With a preopen (`scratch` or template files) stdin is WASI's, the input's bytes. With `scratch`, the
    directory is made under `settings.run_root` and the run's ScratchBudget caps what its file system
    holds at `settings`' cap. A run with any preopen holds at most `max_descriptors` open descriptors
    (wasi_files.py; `guard` forwards its calls to WASI)."""
    wasi = wasmtime.WasiConfig()
    wasi.argv = spec.argv
    wasi.env = list(spec.env.items())
    scratch: Path | None = None
    if "scratch" in spec.tools or spec.mounts:
        # stdin from memory: a template with files but no `scratch` needs no directory of its own per run.
        ffi.set_stdin_bytes(wasi, spec.input)
        if "scratch" in spec.tools:
            # A private directory per run is the guest's whole file system: preopened at `/`, where
            # standard libraries resolve both absolute paths and relative ones, and its subdirectory
            # `scratch` at `/scratch` as before. `/` comes first (fd 3) because Go takes the first preopen
            # as its working directory (wasi-libc and Rust use `/`), so `.` is `/` for all of them; libcs
            # pick the longest matching preopen, so `/scratch/x` is one file through either.
            scratch = Path(tempfile.mkdtemp(prefix="af-run-", dir=settings.run_root))
            (scratch / "scratch").mkdir()
            wasi.preopen_dir(str(scratch), "/")
            wasi.preopen_dir(str(scratch / "scratch"), "/scratch")
            run.scratch = ScratchBudget(str(scratch), settings.max_bytes, settings.max_entries)
        # Template files after `/` (Go's working directory stays `/`): each allowed directory's prepared
        # read-only tree (files.py, built once per file set), preopened as it is: nothing is copied or
        # hashed per run. Read-only in wasmtime's WASI, so a write, create, unlink or rename there fails
        # with an errno (EPERM/EBADF/EROFS as the call goes); libcs pick the longest matching preopen, so
        # `/data/x` resolves here, not in `/`.
        for host, guest_dir in spec.mounts:
            wasi.preopen_dir(host, guest_dir, fs_mutable=False)
        preopens = (2 if scratch is not None else 0) + len(spec.mounts)
        run.files = RunFiles(Descriptors.at_start(preopens, max_descriptors), guard, run.scratch)
        # No stdout/stderr callbacks: writes to stdout and stderr, wherever fd_renumber moved them, are
        # fs_calls.py's (to fd_write above), so WASI's own stdout and stderr are never written. Setting
        # callbacks anyway cost every such run ~180 us (wasmtime starts an output task for each), which is
        # most of what shipping template files cost a run; WASI's default for both is a sink.
    store.set_wasi(wasi)
    return scratch
