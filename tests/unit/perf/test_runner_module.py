"""perf/runner.py's publish-to-first-run module: the same agent with a custom section appended (written
through examples/tools/wasm_writer.py), so each trial publishes a new digest the executor must compile."""

from __future__ import annotations

import hashlib

import wasmtime

from perf.runner import _with_custom_section

WAT = '(module (memory (export "memory") 1) (func (export "_start")))'


def test_the_custom_section_keeps_the_module_valid_and_changes_its_digest() -> None:
    base = bytes(wasmtime.wat2wasm(WAT))
    engine = wasmtime.Engine()
    digests = {hashlib.sha256(base).hexdigest()}
    # A payload of 200 bytes makes the section's size a two-byte LEB128.
    for payload in (b"", b"trial 1", b"x" * 200):
        module = _with_custom_section(base, payload)
        wasmtime.Module.validate(engine, module)
        assert module.startswith(base)
        name = b"agentfactory-perf"
        body = bytes([len(name)]) + name + payload
        size = len(body)
        encoded_size = bytes([size]) if size < 0x80 else bytes([(size & 0x7F) | 0x80, size >> 7])
        assert module[len(base) :] == b"\x00" + encoded_size + body
        digests.add(hashlib.sha256(module).hexdigest())
    assert len(digests) == 4
