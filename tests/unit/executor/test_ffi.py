"""The FFI shim's private wasmtime-py symbols exist in the installed wasmtime, and its checked calls work."""

from __future__ import annotations

import importlib.metadata

import pytest
import wasmtime

from services.executor.sandbox import ffi


def test_every_private_symbol_the_shim_needs_exists() -> None:
    gone = ffi.missing()
    assert not gone, (
        f"wasmtime-py {importlib.metadata.version('wasmtime')} no longer has {', '.join(gone)}: "
        "services/executor/sandbox/ffi.py must be ported to the new bindings before this upgrade"
    )


def test_fuel_through_a_caller_is_read_and_set() -> None:
    seen: list[int] = []

    def probe(caller: wasmtime.Caller) -> None:
        seen.append(ffi.caller_fuel(caller))
        ffi.set_caller_fuel(caller, 0)

    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_fuel(10_000)
    module = wasmtime.Module(
        engine, '(module (import "" "p" (func $p)) (func (export "f") (call $p) (loop $l (br $l))))'
    )
    instance = wasmtime.Instance(
        store, module, [wasmtime.Func(store, wasmtime.FuncType([], []), probe, access_caller=True)]
    )
    with pytest.raises(wasmtime.Trap) as trapped:
        instance.exports(store)["f"](store)
    assert trapped.value.trap_code is wasmtime.TrapCode.OUT_OF_FUEL
    assert 0 < seen[0] <= 10_000


def test_a_failing_fuel_call_raises_instead_of_being_dropped() -> None:
    errors: list[BaseException] = []

    def probe(caller: wasmtime.Caller) -> None:
        try:
            ffi.set_caller_fuel(caller, 0)  # this engine does not consume fuel: the C call returns an error
        except wasmtime.WasmtimeError as exc:
            errors.append(exc)

    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    module = wasmtime.Module(engine, '(module (import "" "p" (func $p)) (func (export "f") (call $p)))')
    instance = wasmtime.Instance(
        store, module, [wasmtime.Func(store, wasmtime.FuncType([], []), probe, access_caller=True)]
    )
    instance.exports(store)["f"](store)
    assert len(errors) == 1 and "fuel" in str(errors[0]).lower()
