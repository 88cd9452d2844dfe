"""A real wasmtime sandbox shared by the executor's unit tests, and helpers to run modules in it."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import wasmtime

from services.executor.events import Finished, RunEvent, Started
from services.executor.kvstore import KvStore
from services.executor.sandbox import AgentTools, EngineSettings, Prepared, RunSpec, RunState, Sandbox, ToolContext
from services.templates.manifest import Limits
from tests.harness import REPO

WASM_DIR = REPO / "build" / "wasm"


def wasm_file(name: str) -> bytes:
    path = WASM_DIR / f"{name}.wasm"
    if not path.exists():
        subprocess.run(["make", "-s", "examples"], cwd=REPO, check=True)
    return path.read_bytes()


def run_bare_wasi(wasm: bytes, config: wasmtime.WasiConfig, stdout: Path) -> bytes:
    """The reference the sandbox's file system is compared with: wasmtime-py's own WASI with `config`
    (argv, preopens, stdin), stdout to a file; the run must exit 0. Returns what it printed."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    config.stdout_file = str(stdout)
    store.set_wasi(config)
    start = linker.instantiate(store, wasmtime.Module(engine, wasm)).exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    try:
        start(store)
    except wasmtime.ExitTrap as exc:
        assert exc.code == 0
    return stdout.read_bytes()


def limits(**over: int) -> Limits:
    base = dict(fuel=10**9, memory_bytes=16 << 20, timeout_ms=2000, max_output_bytes=65536, max_tool_calls=100)
    base.update(over)
    return Limits(**base)


@dataclass
class Outcome:
    finished: Finished
    events: list[RunEvent] = field(default_factory=list)

    @property
    def output(self) -> bytes:
        return b"".join(e.data for e in self.events if type(e).__name__ == "Output")


class Runner:
    def __init__(self, sandbox: Sandbox, kv: KvStore) -> None:
        self.sandbox = sandbox
        self.kv = kv
        self.http_allowed: set[str] = set()

    def prepare(self, wasm: bytes | str, tools: frozenset[str] = frozenset()) -> Prepared:
        binary = wasmtime.wat2wasm(wasm) if isinstance(wasm, str) else wasm
        # As the executor does (modules.py): a tool set with scratch runs the module compiled for it.
        return self.sandbox.link(self.sandbox.compile(bytes(binary), "scratch" in tools), tools, "test@1.0.0")

    def state(self, prepared: Prepared, data: bytes = b"", tools: frozenset[str] = frozenset(), **lim: int) -> RunState:
        events: list[RunEvent] = []
        host = AgentTools(ToolContext("agent-1", self.kv, lambda hp: hp in self.http_allowed))
        spec = RunSpec(limits(**lim), data, ["test"], {}, tools, Started("d" * 64, 1, "memory"), events.extend, host)
        state = RunState(spec, 0.0)
        state.events = events  # type: ignore[attr-defined]
        return state

    def run(self, wasm: bytes | str, data: bytes = b"", tools: frozenset[str] = frozenset(), **lim: int) -> Outcome:
        prepared = self.prepare(wasm, tools)
        state = self.state(prepared, data, tools, **lim)
        finished = self.sandbox.run(prepared, state)
        return Outcome(finished, state.events)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(EngineSettings(epoch_tick_ms=5))
    yield box
    box.close()


@pytest.fixture
def runner(sandbox: Sandbox, tmp_path: Path) -> Runner:
    return Runner(sandbox, KvStore(tmp_path / "kv.sqlite3"))


class SlowGate:
    """Holds every answer to /slow until the test releases it. A run that ends while the gate is closed
    ended without the answer: that is how a test sees a host call cut at a deadline or a cancel, with
    no bound on how long the machine took to get there."""

    CAP_SECONDS = 60.0  # a sandbox that wrongly waits for the answer gets it after this, and the test says so

    def __init__(self) -> None:
        self._open = threading.Event()
        self._lock = threading.Lock()
        self.answered = 0

    def hold(self) -> None:
        self._open.wait(self.CAP_SECONDS)
        with self._lock:
            self.answered += 1

    def close(self) -> None:
        self._open.clear()
        with self._lock:
            self.answered = 0

    def release(self) -> None:
        self._open.set()


_SLOW = SlowGate()


@pytest.fixture
def slow_gate() -> Iterator[SlowGate]:
    _SLOW.close()
    yield _SLOW
    _SLOW.release()  # let the held handler threads finish


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            _SLOW.hold()
        body = b"hello from loopback"
        if self.path.startswith("/missing"):
            self.send_response(404)
            body = b""
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
