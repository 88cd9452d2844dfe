"""The one module that touches wasmtime-py's raw bindings and private members.

wasmtime-py 50 binds but does not wrap the C API's epoch deadline callback, and a host function can only
reach its store's fuel through `Caller._context()`. Everything that needs those goes through here, and
every C call that returns a `wasmtime_error_t*` is checked the way wasmtime-py's own wrappers check it
(`if err: raise WasmtimeError._from_ptr(err)`), so a failure is an exception, never a silently ignored
pointer (and never a leaked error object).

`REQUIRED` names every private symbol used here; `missing()` lists the ones a wasmtime upgrade removed
(tests/unit/executor/test_ffi.py turns that into a clear failure instead of an AttributeError mid-run).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import wasmtime
from wasmtime import _ffi as ffi

# (where, attribute): every private name this module relies on.
REQUIRED: tuple[tuple[str, str], ...] = (
    ("wasmtime._ffi", "wasmtime_context_t"),
    ("wasmtime._ffi", "wasmtime_update_deadline_kind_t"),
    ("wasmtime._ffi", "wasmtime_context_get_fuel"),
    ("wasmtime._ffi", "wasmtime_context_set_fuel"),
    ("wasmtime._ffi", "wasmtime_store_epoch_deadline_callback"),
    ("wasmtime._ffi", "wasmtime_error_new"),
    ("wasmtime.Caller", "_context"),
    ("wasmtime.Store", "ptr"),
    ("wasmtime.WasmtimeError", "_from_ptr"),
)


def missing() -> list[str]:
    """The REQUIRED symbols this wasmtime-py does not have (empty when the shim can work)."""
    owners: dict[str, object] = {
        "wasmtime._ffi": ffi,
        "wasmtime.Caller": wasmtime.Caller,
        "wasmtime.Store": wasmtime.Store,
        "wasmtime.WasmtimeError": wasmtime.WasmtimeError,
    }
    return [f"{where}.{name}" for where, name in REQUIRED if not hasattr(owners[where], name)]


def _check(err: ctypes._Pointer[ffi.wasmtime_error]) -> None:
    if err:
        raise wasmtime.WasmtimeError._from_ptr(err)


# --- fuel through a host function's Caller -------------------------------------------------------


def caller_fuel(caller: wasmtime.Caller) -> int:
    """Fuel left in the caller's store (raises WasmtimeError like Store.get_fuel)."""
    fuel = ctypes.c_uint64(0)
    _check(ffi.wasmtime_context_get_fuel(caller._context(), ctypes.byref(fuel)))
    return fuel.value


def set_caller_fuel(caller: wasmtime.Caller, fuel: int) -> None:
    """Set the caller's store fuel (raises WasmtimeError like Store.set_fuel)."""
    _check(ffi.wasmtime_context_set_fuel(caller._context(), fuel))


# --- the epoch deadline callback -----------------------------------------------------------------

# size_t (wasmtime_error_t*) callback(wasmtime_context_t*, void* data, uint64_t* delta, kind*)
EpochCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
)
UPDATE_CONTINUE = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))


def set_epoch_callback(store: wasmtime.Store, callback: Callable[..., int]) -> None:
    """Register `callback` (an EpochCallback instance kept alive by its module) on `store`."""
    ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), callback, None, _NO_FINALIZER)


def interrupt(message: bytes) -> int:
    """A new wasmtime_error_t* for an epoch callback to return: wasmtime takes ownership and traps."""
    error = ffi.wasmtime_error_new(message)
    return ctypes.cast(error, ctypes.c_void_p).value or 0
