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
    ("wasmtime._ffi", "wasmtime_func_call"),
    ("wasmtime._ffi", "wasmtime_val_t"),
    ("wasmtime._ffi", "wasm_trap_t"),
    ("wasmtime._ffi", "wasi_config_set_stdin_bytes"),
    ("wasmtime._ffi", "wasm_byte_vec_new"),
    ("wasmtime._ffi", "wasm_byte_vec_delete"),
    ("wasmtime.WasiConfig", "ptr"),
    ("wasmtime.Func", "_func"),
    ("wasmtime.Caller", "_context"),
    ("wasmtime.Store", "ptr"),
    ("wasmtime.WasmtimeError", "_from_ptr"),
    ("wasmtime.Trap", "_from_ptr"),
)


def missing() -> list[str]:
    """The REQUIRED symbols this wasmtime-py does not have (empty when the shim can work)."""
    owners: dict[str, object] = {
        "wasmtime._ffi": ffi,
        "wasmtime.Caller": wasmtime.Caller,
        "wasmtime.Func": wasmtime.Func,
        "wasmtime.Store": wasmtime.Store,
        "wasmtime.WasmtimeError": wasmtime.WasmtimeError,
        "wasmtime.Trap": wasmtime.Trap,
        "wasmtime.WasiConfig": wasmtime.WasiConfig,
    }
    # An instance attribute (Func._func) is declared in its class's annotations.
    return [
        f"{where}.{name}"
        for where, name in REQUIRED
        if not hasattr(owners[where], name) and name not in getattr(owners[where], "__annotations__", {})
    ]


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


# --- stdin from memory --------------------------------------------------------------------------


def set_stdin_bytes(config: wasmtime.WasiConfig, data: bytes) -> None:
    """WASI stdin reads `data`: wasmtime-py wraps only a stdin file, which costs a run a temporary
    directory and a file written and removed."""
    vec = ffi.wasm_byte_vec_t()
    ffi.wasm_byte_vec_new(
        ctypes.byref(vec), len(data), ctypes.cast(ctypes.c_char_p(data), ctypes.POINTER(ctypes.c_uint8))
    )
    try:
        ffi.wasi_config_set_stdin_bytes(config.ptr(), ctypes.byref(vec))  # takes the bytes, leaves vec empty
    finally:
        ffi.wasm_byte_vec_delete(ctypes.byref(vec))  # frees nothing once taken; the copy if it was not


# --- calling a wasm function from inside a host function ---------------------------------------

KIND_I32, KIND_I64 = 0, 1  # WASMTIME_I32, WASMTIME_I64


class IntCall:
    """A wasm function of integer parameters and one i32 result, called from inside a host function
    through its Caller, with its argument and result buffers made once: wasmtime-py's Func.__call__
    builds a Val per argument, several times slower per call."""

    def __init__(self, func: wasmtime.Func, kinds: tuple[int, ...]) -> None:
        self.func = func._func
        self.kinds = kinds
        self.params = (ffi.wasmtime_val_t * len(kinds))()
        for i, kind in enumerate(kinds):
            self.params[i].kind = ctypes.c_ubyte(kind)
        self.results = (ffi.wasmtime_val_t * 1)()

    def __call__(self, caller: wasmtime.Caller, args: tuple[int, ...]) -> int | None:
        """The result, or None when the call failed (a trap or an error, freed here)."""
        params = self.params
        for i, kind in enumerate(self.kinds):
            if kind == KIND_I64:
                params[i].of.i64 = args[i]
            else:
                params[i].of.i32 = args[i]
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = ffi.wasmtime_func_call(
            caller._context(), ctypes.byref(self.func), params, len(args), self.results, 1, ctypes.byref(trap)
        )
        if error:
            wasmtime.WasmtimeError._from_ptr(error)  # takes ownership, so the error object is freed
            return None
        if trap:
            wasmtime.Trap._from_ptr(trap)
            return None
        return int(self.results[0].of.i32)


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
