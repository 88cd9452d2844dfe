"""The wasmtime sandbox that runs agents, split by concern:

- config.py     EngineSettings: what shapes compiled code, and its fingerprint; ScratchSettings
- engine.py     Sandbox: the Engine, epoch ticker, compile, link, and one run on one thread
- state.py      RunSpec / RunState: one run's inputs, counters, buffered events; the thread's current run
- ffi.py        the only module touching wasmtime-py's raw bindings and private members (checked errors)
- hostcall.py   what every host function shares: stop the run from a host call, fail without raising
- stdio.py      stdin/stdout/stderr (host functions shadowing WASI fd_read/fd_write; WASI stdin with a preopen)
- wasi.py       interruptible shadows of the WASI calls that can wait or do unbounded work
- scratch.py    the byte and entry cap of a run's file system (`scratch`), measuring and removing it
- wasi_files.py a run's descriptor table (the per-run bound on open descriptors; where stdio is)
- fs_calls.py   the WASI calls checked first (descriptors, stdio, the scratch cap) and forwarded to WASI
- abi.py        the agentfactory tool ABI as one table (names, signatures, dispatch); codes.py its codes
- tools.py      the tool functions themselves; http_fetch.py the http_get client
- outcome.py    how a run ended: outcome, limit, trap, reason

Callers import from here.
"""

from services.executor.sandbox.abi import TOOL_FUNCTIONS, TOOL_MODULE, ToolFunction
from services.executor.sandbox.config import WASMTIME_VERSION, EngineSettings, ScratchSettings
from services.executor.sandbox.engine import BLOCKING_WASI_IMPORTS, WASI_MODULE, Prepared, Sandbox
from services.executor.sandbox.hostcall import stop_now
from services.executor.sandbox.state import RunSpec, RunState
from services.executor.sandbox.tools import AgentTools, ToolContext

__all__ = [
    "BLOCKING_WASI_IMPORTS",
    "TOOL_FUNCTIONS",
    "TOOL_MODULE",
    "WASI_MODULE",
    "WASMTIME_VERSION",
    "AgentTools",
    "EngineSettings",
    "Prepared",
    "RunSpec",
    "RunState",
    "Sandbox",
    "ScratchSettings",
    "ToolContext",
    "ToolFunction",
    "stop_now",
]
