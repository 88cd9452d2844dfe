"""Run one example module locally under wasmtime, with in-memory stand-ins for the tools.

A developer convenience for writing agents without the mesh: it is NOT the executor (no
signatures, no registry, no policy) and nothing else imports it. It follows
docs/tools-abi.md closely enough to exercise an agent: WASI with stdin/stdout/stderr and no
preopens, the `agentfactory` tools the manifest grants, fuel, a memory cap, an epoch
deadline, an output cap and a tool-call cap.

Usage:
    python examples/tools/run_local.py examples/agents/text-stats \
        --input '{"text": "to be or not to be"}'

The first argument is an agent directory (its template.json gives the tools and limits,
following `extends` to a sibling directory) or a .wasm file. Options override the
manifest. The agent's stdout goes to stdout; a one-line JSON summary goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import wasmtime

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent
WASM_DIR = EXAMPLES.parent / "build" / "wasm"

AF_ERR_NOT_FOUND = -1
AF_ERR_DENIED = -2
AF_ERR_BOUNDS = -3
AF_ERR_TOO_LARGE = -4
AF_ERR_IO = -5
AF_ERR_INVALID = -6

KEY_CAP, VALUE_CAP, URL_CAP = 256, 64 * 1024, 2048

I32 = wasmtime.ValType.i32()
I64 = wasmtime.ValType.i64()

# import name -> (tool, params, results)
TOOL_IMPORTS = {
    "log": ("log", [I32, I32, I32], [I32]),
    "kv_get": ("kv", [I32, I32, I32, I32], [I32]),
    "kv_put": ("kv", [I32, I32, I32, I32], [I32]),
    "clock_now_ms": ("clock", [], [I64]),
    "random_fill": ("random", [I32, I32], [I32]),
    "http_get": ("http_get", [I32, I32, I32, I32], [I32]),
}


class LimitTripped(Exception):
    pass


def load_manifest(agent_dir: Path) -> dict:
    """Read template.json, resolving `extends` against sibling directories (shallow merge)."""
    manifest = json.loads((agent_dir / "template.json").read_text())
    parent_ref = manifest.get("extends")
    if not parent_ref:
        return manifest
    parent_name = parent_ref.split("@", 1)[0]
    for candidate in (agent_dir.parent / parent_name, agent_dir.parent / parent_name.removeprefix("hostile-")):
        if (candidate / "template.json").exists():
            parent = load_manifest(candidate)
            merged = {**parent, **manifest}
            merged["limits"] = {**parent.get("limits", {}), **manifest.get("limits", {})}
            merged["_module_dir"] = parent.get("_module_dir", candidate.name)
            return merged
    raise SystemExit(f"parent {parent_ref} of {agent_dir} not found")


def module_path(agent_dir: Path, manifest: dict) -> Path:
    dir_name = manifest.get("_module_dir", agent_dir.name)
    prefix = "hostile-" if agent_dir.parent.name == "hostile" else ""
    return WASM_DIR / f"{prefix}{dir_name}.wasm"


class Run:
    def __init__(self, manifest: dict, kv: dict[str, bytes]) -> None:
        limits = manifest.get("limits", {})
        self.tools = set(manifest.get("tools", []))
        self.http_hosts = set(manifest.get("http_hosts", []))
        self.fuel = int(limits.get("fuel", 50_000_000))
        self.memory_bytes = int(limits.get("memory_bytes", 16 << 20))
        self.timeout_ms = int(limits.get("timeout_ms", 2000))
        self.max_output = int(limits.get("max_output_bytes", 65536))
        self.max_tool_calls = int(limits.get("max_tool_calls", 100))
        self.env = manifest.get("env", {})
        self.args = manifest.get("args", [])
        self.kv = kv
        self.tool_calls = 0
        self.output = bytearray()
        self.logs: list[str] = []
        self.tripped: str | None = None
        self.deadline = 0.0

        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        config.max_wasm_stack = 512 * 1024
        self.engine = wasmtime.Engine(config)

    # --- host helpers ----------------------------------------------------------------------
    def _trip(self, limit: str) -> None:
        self.tripped = self.tripped or limit
        self.engine.increment_epoch()  # stop the guest at its next loop back-edge or call

    def _count(self, tool: str, detail: str = "") -> None:
        self.tool_calls += 1
        if self.tool_calls > self.max_tool_calls:
            self._trip("LIMIT_TOOL_CALLS")
            raise LimitTripped("tool-call limit")

    @staticmethod
    def _region(caller: wasmtime.Caller, ptr: int, length: int) -> tuple[int, int] | None:
        ptr &= 0xFFFFFFFF  # wasm i32 arrive signed; pointers are unsigned offsets
        length &= 0xFFFFFFFF
        mem = caller["memory"]
        if not isinstance(mem, wasmtime.Memory):
            return None
        if ptr + length > mem.data_len(caller):
            return None
        return ptr, length

    def _read(self, caller: wasmtime.Caller, ptr: int, length: int) -> bytes | None:
        region = self._region(caller, ptr, length)
        if region is None:
            return None
        start, n = region
        return bytes(caller["memory"].read(caller, start, start + n))

    def _write(self, caller: wasmtime.Caller, ptr: int, cap: int, data: bytes) -> int:
        region = self._region(caller, ptr, cap)
        if region is None:
            return AF_ERR_BOUNDS
        start, n = region
        caller["memory"].write(caller, data[:n], start)
        return len(data)

    # --- tools -----------------------------------------------------------------------------
    def log(self, caller, level, ptr, length):
        self._count("log")
        if level not in (0, 1, 2):
            return AF_ERR_INVALID
        if (length & 0xFFFFFFFF) > VALUE_CAP:
            return AF_ERR_TOO_LARGE
        msg = self._read(caller, ptr, length)
        if msg is None:
            return AF_ERR_BOUNDS
        try:
            text = msg.decode()
        except UnicodeDecodeError:
            return AF_ERR_INVALID
        self.logs.append(f"{('info', 'warn', 'error')[level]}: {text}")
        return 0

    def kv_get(self, caller, kptr, klen, bptr, bcap):
        self._count("kv")
        if (klen & 0xFFFFFFFF) > KEY_CAP:
            return AF_ERR_TOO_LARGE
        key = self._read(caller, kptr, klen)
        if key is None or self._region(caller, bptr, bcap) is None:
            return AF_ERR_BOUNDS
        if key.decode(errors="replace") not in self.kv:
            return AF_ERR_NOT_FOUND
        return self._write(caller, bptr, bcap, self.kv[key.decode(errors="replace")])

    def kv_put(self, caller, kptr, klen, vptr, vlen):
        self._count("kv")
        if (klen & 0xFFFFFFFF) > KEY_CAP or (vlen & 0xFFFFFFFF) > VALUE_CAP:
            return AF_ERR_TOO_LARGE
        key = self._read(caller, kptr, klen)
        value = self._read(caller, vptr, vlen)
        if key is None or value is None:
            return AF_ERR_BOUNDS
        self.kv[key.decode(errors="replace")] = value
        return 0

    def clock_now_ms(self, caller):
        self._count("clock")
        return int(time.time() * 1000)

    def random_fill(self, caller, ptr, length):
        self._count("random")
        if (length & 0xFFFFFFFF) > VALUE_CAP:
            return AF_ERR_TOO_LARGE
        if self._region(caller, ptr, length) is None:
            return AF_ERR_BOUNDS
        return min(self._write(caller, ptr, length, os.urandom(length & 0xFFFFFFFF)), 0)

    def http_get(self, caller, uptr, ulen, bptr, bcap):
        self._count("http_get")
        if (ulen & 0xFFFFFFFF) > URL_CAP:
            return AF_ERR_TOO_LARGE
        raw = self._read(caller, uptr, ulen)
        if raw is None or self._region(caller, bptr, bcap) is None:
            return AF_ERR_BOUNDS
        try:
            url = raw.decode()
        except UnicodeDecodeError:
            return AF_ERR_INVALID
        if not url.startswith("http://"):
            return AF_ERR_DENIED
        hostport = url[len("http://") :].split("/", 1)[0]
        if hostport not in self.http_hosts:
            self.logs.append(f"http_get denied: {hostport} not in http_hosts")
            return AF_ERR_DENIED
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return AF_ERR_IO
        try:
            with urllib.request.urlopen(url, timeout=remaining) as resp:
                body = resp.read(16 << 20)
        except (OSError, urllib.error.URLError):
            return AF_ERR_IO
        return self._write(caller, bptr, bcap, body)

    # --- run -------------------------------------------------------------------------------
    def _watch(self, stdout: Path, done: threading.Event) -> None:
        """Trip the deadline and the output cap from outside the guest (polling)."""
        while not done.wait(0.002):
            if time.monotonic() >= self.deadline:
                self._trip("LIMIT_DEADLINE")
                return
            try:
                if stdout.stat().st_size > self.max_output:
                    self._trip("LIMIT_OUTPUT")
                    return
            except FileNotFoundError:
                pass

    def run(self, wasm: bytes, stdin: bytes) -> dict:
        module = wasmtime.Module(self.engine, wasm)
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        for name, (tool, params, results) in TOOL_IMPORTS.items():
            if tool in self.tools:
                linker.define_func(
                    "agentfactory", name, wasmtime.FuncType(params, results), getattr(self, name), access_caller=True
                )
        for imp in module.imports:
            ok = imp.module == "wasi_snapshot_preview1" or (
                imp.module == "agentfactory" and TOOL_IMPORTS.get(imp.name or "", ("",))[0] in self.tools
            )
            if not ok:
                return {"outcome": "REFUSED", "reason": f"import {imp.module}.{imp.name} is not granted"}

        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=self.memory_bytes)
        store.set_fuel(self.fuel)
        store.set_epoch_deadline(1)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["agent", *self.args]
        wasi.env = list(self.env.items())
        # Plain files, not stdout_custom/stderr_custom: wasmtime-py calls custom-output
        # callbacks (and their finalizers) from a tokio worker thread, which can abort the
        # process when that happens while the interpreter shuts down.
        tmp = Path(tempfile.mkdtemp(prefix="run_local-"))
        (tmp / "stdin").write_bytes(stdin)
        wasi.stdin_file = str(tmp / "stdin")
        wasi.stdout_file = str(tmp / "stdout")
        wasi.stderr_file = str(tmp / "stderr")
        store.set_wasi(wasi)

        result: dict = {}
        start = time.monotonic()
        self.deadline = start + self.timeout_ms / 1000
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(tmp / "stdout", done), daemon=True)
        watcher.start()
        try:
            instance = linker.instantiate(store, module)
            start_fn = instance.exports(store)["_start"]
            start_fn(store)
            result = {"outcome": "SUCCEEDED", "exit_code": 0}
        except wasmtime.ExitTrap as e:
            result = {"outcome": "SUCCEEDED" if e.code == 0 else "FAILED", "exit_code": e.code}
        except (wasmtime.Trap, wasmtime.WasmtimeError, LimitTripped) as e:
            text = str(e)
            # The last "wasm trap: ..." or error line says what happened; the rest is a backtrace.
            found = re.findall(r"wasm trap: .*", text)
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            message = found[-1] if found else (lines[-1] if lines else type(e).__name__)
            code = getattr(e, "trap_code", None)
            limit = self.tripped or {
                wasmtime.TrapCode.OUT_OF_FUEL: "LIMIT_FUEL",
                wasmtime.TrapCode.STACK_OVERFLOW: "LIMIT_STACK",
            }.get(code)
            if limit is None and "exceeds memory limits" in text:
                limit = "LIMIT_MEMORY"
            result = {"outcome": "FAILED" if limit is None else "LIMIT", "limit": limit, "trap": message}
        finally:
            done.set()
            watcher.join()
        output = (tmp / "stdout").read_bytes()
        if len(output) > self.max_output:
            self.tripped = self.tripped or "LIMIT_OUTPUT"
        self.output = bytearray(output[: self.max_output])
        for line in (tmp / "stderr").read_bytes()[:65536].decode(errors="replace").splitlines():
            self.logs.append(f"stderr: {line}")
        shutil.rmtree(tmp, ignore_errors=True)
        if self.tripped and result.get("outcome") != "LIMIT":
            result = {**result, "outcome": "LIMIT", "limit": self.tripped}
        try:
            fuel_used = self.fuel - store.get_fuel()
        except wasmtime.WasmtimeError:
            fuel_used = None
        # Drop the store (and the WASI output callbacks) now, not during interpreter exit.
        store.close()
        result.update(
            duration_ms=round((time.monotonic() - start) * 1000, 3),
            fuel_used=fuel_used,
            tool_calls=self.tool_calls,
            output_bytes=len(self.output),
        )
        return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("agent", help="agent directory (with template.json) or .wasm file")
    ap.add_argument("--input", default=None, help="stdin for the agent (default: read our stdin)")
    ap.add_argument("--kv", default=None, help="JSON file keeping the kv store between runs")
    ap.add_argument("--fuel", type=int)
    ap.add_argument("--timeout-ms", type=int)
    ap.add_argument("--memory-bytes", type=int)
    ap.add_argument("--tools", help="comma-separated tools (overrides the manifest)")
    ap.add_argument("--http-host", action="append", default=[], help="extra host:port for http_get")
    ap.add_argument("--logs", action="store_true", help="print log lines to stderr")
    ns = ap.parse_args()

    target = Path(ns.agent)
    if target.is_dir():
        manifest = load_manifest(target)
        wasm_path = module_path(target, manifest)
    else:
        manifest, wasm_path = {}, target
    if ns.tools is not None:
        manifest["tools"] = [t for t in ns.tools.split(",") if t]
    manifest["http_hosts"] = [*manifest.get("http_hosts", []), *ns.http_host]
    limits = manifest.setdefault("limits", {})
    for key in ("fuel", "timeout_ms", "memory_bytes"):
        if getattr(ns, key) is not None:
            limits[key] = getattr(ns, key)

    kv_file = Path(ns.kv) if ns.kv else None
    kv = {}
    if kv_file and kv_file.exists():
        kv = {k: v.encode() for k, v in json.loads(kv_file.read_text()).items()}
    stdin = ns.input.encode() if ns.input is not None else sys.stdin.buffer.read()

    run = Run(manifest, kv)
    result = run.run(wasm_path.read_bytes(), stdin)
    sys.stdout.buffer.write(bytes(run.output))
    sys.stdout.flush()
    if ns.logs:
        for line in run.logs:
            print(f"  [{line}]", file=sys.stderr)
    print(json.dumps(result), file=sys.stderr)
    if kv_file:
        kv_file.write_text(json.dumps({k: v.decode(errors="replace") for k, v in kv.items()}))
    return 0 if result.get("outcome") == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
