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
from typing import TYPE_CHECKING, Any, cast

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
    ("wasmtime._ffi", "wasmtime_func_unchecked_callback_t"),
    ("wasmtime._ffi", "wasmtime_linker_define_func_unchecked"),
    ("wasmtime._ffi", "wasmtime_caller_context"),
    ("wasmtime._ffi", "wasmtime_func_call_unchecked"),
    ("wasmtime._ffi", "wasmtime_memory_data"),
    ("wasmtime._ffi", "wasmtime_memory_data_size"),
    ("wasmtime._ffi", "wasm_trap_t"),
    ("wasmtime._ffi", "wasmtime_trap_new"),
    ("wasmtime._ffi", "wasi_config_set_stdin_bytes"),
    ("wasmtime._ffi", "wasm_byte_vec_new"),
    ("wasmtime._ffi", "wasm_byte_vec_delete"),
    ("wasmtime._ffi", "wasmtime_caller_export_get"),
    ("wasmtime._ffi", "wasmtime_linker_get"),
    ("wasmtime._ffi", "wasmtime_instance_new"),
    ("wasmtime._ffi", "wasmtime_instance_export_get"),
    ("wasmtime._ffi", "wasmtime_extern_t"),
    ("wasmtime._ffi", "WASMTIME_EXTERN_MEMORY"),
    ("wasmtime._ffi", "WASMTIME_EXTERN_GLOBAL"),
    ("wasmtime._ffi", "WASMTIME_EXTERN_TABLE"),
    ("wasmtime._ffi", "WASMTIME_EXTERN_FUNC"),
    ("wasmtime._ffi", "WASMTIME_FUNCREF"),
    ("wasmtime._ffi", "wasmtime_table_set"),
    ("wasmtime._ffi", "wasmtime_linker_define"),
    ("wasmtime._ffi", "wasmtime_global_t"),
    ("wasmtime._ffi", "wasmtime_global_get"),
    ("wasmtime._ffi", "wasmtime_global_set"),
    ("wasmtime._ffi", "wasmtime_val_t"),
    ("wasmtime._ffi", "WASMTIME_I32"),
    ("wasmtime._ffi", "WASMTIME_I64"),
    ("wasmtime.Module", "ptr"),
    ("wasmtime.WasiConfig", "ptr"),
    ("wasmtime.Func", "_func"),
    ("wasmtime.Memory", "_memory"),
    ("wasmtime.Linker", "ptr"),
    ("wasmtime.FuncType", "ptr"),
    ("wasmtime.Caller", "_invalidate"),
    ("wasmtime.Caller", "_context"),
    ("wasmtime.Store", "ptr"),
    ("wasmtime.Store", "_context"),
    ("wasmtime.WasmtimeError", "_from_ptr"),
    ("wasmtime.Trap", "_from_ptr"),
)


def missing() -> list[str]:
    """The REQUIRED symbols this wasmtime-py does not have (empty when the shim can work)."""
    owners: dict[str, object] = {
        "wasmtime._ffi": ffi,
        "wasmtime.Caller": wasmtime.Caller,
        "wasmtime.Func": wasmtime.Func,
        "wasmtime.Memory": wasmtime.Memory,
        "wasmtime.Linker": wasmtime.Linker,
        "wasmtime.FuncType": wasmtime.FuncType,
        "wasmtime.Store": wasmtime.Store,
        "wasmtime.WasmtimeError": wasmtime.WasmtimeError,
        "wasmtime.Trap": wasmtime.Trap,
        "wasmtime.WasiConfig": wasmtime.WasiConfig,
        "wasmtime.Module": wasmtime.Module,
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


# --- raw host functions -------------------------------------------------------------------------
#
# wasmtime-py's define_func goes through a generic trampoline that wraps the Caller and converts every
# argument and result to and from a Val: about 7 us a call on this machine. A raw ("unchecked") host
# function reads and writes its i32/i64 values in place and costs about 0.3 us; calling a wasm function
# from it in place about 2 us more. For host functions on a per-call path (fs_calls.py).

# size_t (wasm_trap_t*) callback(void* env, wasmtime_caller_t*, wasmtime_val_raw_t* args_and_results, size_t)
RawCallback = ffi.wasmtime_func_unchecked_callback_t
if TYPE_CHECKING:  # ctypes pointer types are generic for the type checker only
    RawValues = ctypes._Pointer[ffi.wasmtime_val_raw_t]
    RawCaller = ctypes._Pointer[ffi.wasmtime_caller_t]
    RawContext = ctypes._Pointer[ffi.wasmtime_context_t]
else:
    RawValues = RawCaller = RawContext = Any
RawFunc = ffi.wasmtime_func_t
RawMemory = ffi.wasmtime_memory_t
RawExtern = ffi.wasmtime_extern_t


def define_raw(linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType, callback: object) -> None:
    """Define `callback` (a RawCallback the caller keeps alive) as module.name in `linker`."""
    module_bytes, name_bytes = module.encode(), name.encode()
    _check(
        ffi.wasmtime_linker_define_func_unchecked(
            linker.ptr(),
            ctypes.create_string_buffer(module_bytes),
            len(module_bytes),
            ctypes.create_string_buffer(name_bytes),
            len(name_bytes),
            ty.ptr(),  # `ty` is alive for the call; the linker keeps its own copy of the type
            callback,
            None,
            _NO_FINALIZER,
        )
    )


def context(caller: RawCaller) -> RawContext:
    return ffi.wasmtime_caller_context(caller)


def wrap_caller(caller: RawCaller) -> wasmtime.Caller:
    """A wasmtime-py Caller for the slow paths (call `_invalidate()` on it before returning)."""
    return wasmtime.Caller(caller)


def call_in_place(context: RawContext, func: RawFunc, values: RawValues, count: int) -> int:
    """Call `func` with the raw values a raw host function received (the same types), its result left in
    values[0]. Returns 0, or when the call failed, a trap (a wasm_trap_t* address) for the raw host
    function to return, so that the guest ends as it would have had it made the call itself: the trap
    the call raised, or one carrying the error's message (wasmtime's WASI ends a run with an error for
    some bad arguments, e.g. rights bits preview 1 does not define)."""
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = ffi.wasmtime_func_call_unchecked(context, ctypes.byref(func), values, count, ctypes.byref(trap))
    if error:
        message = str(wasmtime.WasmtimeError._from_ptr(error)).encode()  # takes ownership: freed
        trap = ffi.wasmtime_trap_new(ctypes.create_string_buffer(message), len(message))
    if not trap:  # the usual case, without ctypes.cast (~0.6 us, on every forwarded call)
        return 0
    return ctypes.cast(trap, ctypes.c_void_p).value or 0  # wasmtime takes ownership of a returned trap


def memory_read(context: RawContext, memory: RawMemory, ptr: int, length: int) -> bytes | None:
    """Guest bytes [ptr, ptr+length) of `memory`, or None out of bounds (size and base read afresh: a
    memory.grow may have moved or resized it)."""
    handle = ctypes.byref(memory)
    if ptr + length > ffi.wasmtime_memory_data_size(context, handle):
        return None
    if not length:
        return b""
    return ctypes.string_at(ctypes.addressof(ffi.wasmtime_memory_data(context, handle).contents) + ptr, length)


RawName = tuple["ctypes.Array[ctypes.c_char]", int]


def _name(text: str) -> RawName:
    encoded = text.encode()
    return ctypes.create_string_buffer(encoded), len(encoded)


_MEMORY = _name("memory")


def caller_memory(caller: RawCaller) -> RawMemory | None:
    """The calling instance's exported `memory`, or None when it has none."""
    item = ffi.wasmtime_extern_t()
    if not ffi.wasmtime_caller_export_get(caller, _MEMORY[0], _MEMORY[1], ctypes.byref(item)):
        return None
    kind = cast(int, item.kind)  # a c_uint8 field reads as an int (annotated as the ctypes type)
    return RawMemory.from_buffer_copy(item.of.memory) if kind == ffi.WASMTIME_EXTERN_MEMORY.value else None


def _linker_get(
    linker: wasmtime.Linker, context: RawContext, module: RawName, name: RawName, out: ffi.wasmtime_extern_t
) -> None:
    if not ffi.wasmtime_linker_get(linker.ptr(), context, module[0], module[1], name[0], name[1], ctypes.byref(out)):
        raise wasmtime.WasmtimeError(f"the linker does not define {name[0].value.decode()}")


def _new_instance(
    context: RawContext, module: wasmtime.Module, externs: ctypes.Array[ffi.wasmtime_extern_t]
) -> ffi.wasmtime_instance_t:
    instance = ffi.wasmtime_instance_t()
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    _check(
        ffi.wasmtime_instance_new(
            context, module.ptr(), externs, len(externs), ctypes.byref(instance), ctypes.byref(trap)
        )
    )
    if trap:
        raise wasmtime.Trap._from_ptr(trap)
    return instance


def _export(context: RawContext, instance: ffi.wasmtime_instance_t, name: RawName) -> ffi.wasmtime_extern_t:
    item = ffi.wasmtime_extern_t()
    if not ffi.wasmtime_instance_export_get(context, ctypes.byref(instance), name[0], name[1], ctypes.byref(item)):
        raise wasmtime.WasmtimeError(f"the module does not export {name[0].value.decode()}")
    return item


class RawForwarder:
    """Instantiates, from inside a raw host function, a module whose imports are a memory and then one
    function `linker` defines as `module_name`.`name`, and returns its export `name`. Through wasmtime-py
    (Caller.get, Linker.get, Instance, exports, each wrapping objects and a dict of every export) this cost
    about 110 us for a module forwarding nine functions; one function this way costs about 10 us. Raises
    WasmtimeError when the linker lacks the function or the module the export, as Instance would."""

    def __init__(self, linker: wasmtime.Linker, module: wasmtime.Module, module_name: str, name: str) -> None:
        self.linker, self.module = linker, module
        self._module_name = _name(module_name)
        self._name = _name(name)

    def instantiate(self, caller: RawCaller, memory: RawMemory) -> RawFunc:
        externs = (ffi.wasmtime_extern_t * 2)()
        externs[0].kind = ffi.WASMTIME_EXTERN_MEMORY
        externs[0].of.memory = memory
        context = ffi.wasmtime_caller_context(caller)
        _linker_get(self.linker, context, self._module_name, self._name, externs[1])
        instance = _new_instance(context, self.module, externs)
        return RawFunc.from_buffer_copy(_export(context, instance, self._name).of.func)


class RawImports:
    """Instantiates in a store, through C calls, a module whose imports are a memory and then functions
    `linker` defines. For the scratch cap's wasm guard, made for each run that uses it: wasmtime-py's
    Linker.get, Instance and exports cost about 150 us there (a wrapper per object, a dict of every
    export), these C calls about 20 us."""

    def __init__(self, linker: wasmtime.Linker, module: wasmtime.Module, functions: list[tuple[str, str]]) -> None:
        self.linker, self.module = linker, module
        self._functions = [(_name(module_name), _name(name)) for module_name, name in functions]

    def instantiate(self, store: wasmtime.Store, memory: wasmtime.Memory) -> ffi.wasmtime_instance_t:
        context = store_context(store)
        externs = (ffi.wasmtime_extern_t * (1 + len(self._functions)))()
        externs[0].kind = ffi.WASMTIME_EXTERN_MEMORY
        externs[0].of.memory = memory._memory
        for i, (module_name, name) in enumerate(self._functions, 1):
            _linker_get(self.linker, context, module_name, name, externs[i])
        return _new_instance(context, self.module, externs)


def new_instance(store: wasmtime.Store, module: wasmtime.Module) -> ffi.wasmtime_instance_t:
    """An instance of a module that imports nothing."""
    return _new_instance(store_context(store), module, (ffi.wasmtime_extern_t * 0)())


def table_set_func(
    store: wasmtime.Store, table: ffi.wasmtime_extern_t, index: int, func: ffi.wasmtime_extern_t
) -> None:
    """table[index] = func, both a store's items (raises WasmtimeError out of bounds or on a wrong kind)."""
    if (
        cast(int, table.kind) != ffi.WASMTIME_EXTERN_TABLE.value
        or cast(int, func.kind) != ffi.WASMTIME_EXTERN_FUNC.value
    ):
        raise wasmtime.WasmtimeError("table_set_func takes a table and a function")
    value = ffi.wasmtime_val_t()
    value.kind = ffi.WASMTIME_FUNCREF
    value.of.funcref = func.of.func
    _check(ffi.wasmtime_table_set(store_context(store), ctypes.byref(table.of.table), index, ctypes.byref(value)))


def export(store: wasmtime.Store, instance: ffi.wasmtime_instance_t, name: str) -> ffi.wasmtime_extern_t:
    """An instance's export (raises WasmtimeError when it has none of that name)."""
    return _export(store_context(store), instance, _name(name))


def extern_global(item: ffi.wasmtime_extern_t) -> RawGlobal:
    if cast(int, item.kind) != ffi.WASMTIME_EXTERN_GLOBAL.value:
        raise wasmtime.WasmtimeError("the export is not a global")
    return RawGlobal.from_buffer_copy(item.of.global_)


def linker_define(
    linker: wasmtime.Linker, store: wasmtime.Store, module: str, name: str, item: ffi.wasmtime_extern_t
) -> None:
    """Define a store's item in `linker` (wasmtime-py's define takes its own wrappers only)."""
    (module_bytes, module_len), (name_bytes, name_len) = _name(module), _name(name)
    _check(
        ffi.wasmtime_linker_define(
            linker.ptr(), store_context(store), module_bytes, module_len, name_bytes, name_len, ctypes.byref(item)
        )
    )


# --- globals of a store, from host functions -----------------------------------------------------
#
# The scratch cap's wasm guard keeps its allowance and its on/off flag in globals (fs_calls.FastGuard);
# the host reads and sets them on its slow path, with the store's context (the same pointer a host
# function's caller has), through C calls instead of wasmtime-py's Val conversions.

RawGlobal = ffi.wasmtime_global_t


def store_context(store: wasmtime.Store) -> RawContext:
    return store._context()


def global_get(context: RawContext, item: RawGlobal) -> int:
    """An i32 or i64 global's value."""
    value = ffi.wasmtime_val_t()
    ffi.wasmtime_global_get(context, ctypes.byref(item), ctypes.byref(value))
    kind = cast(int, value.kind)
    return value.of.i64 if kind == ffi.WASMTIME_I64.value else value.of.i32


def global_set(context: RawContext, item: RawGlobal, number: int, wide: bool) -> None:
    """Set a mutable i64 (`wide`) or i32 global."""
    value = ffi.wasmtime_val_t()
    value.kind = ffi.WASMTIME_I64 if wide else ffi.WASMTIME_I32
    if wide:
        value.of.i64 = number
    else:
        value.of.i32 = number
    _check(ffi.wasmtime_global_set(context, ctypes.byref(item), ctypes.byref(value)))


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
