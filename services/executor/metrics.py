"""Executor metrics (Prometheus). RPC latency comes from services.common.metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter("agentfactory_executor_runs_total", "Finished runs by outcome and limit.", ["outcome", "limit"])
REFUSALS = Counter("agentfactory_executor_refusals_total", "Runs refused before starting, by reason.", ["reason"])
FUEL_USED = Histogram(
    "agentfactory_executor_fuel_used",
    "Fuel consumed per run.",
    buckets=(1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10),
)
PEAK_MEMORY = Histogram(
    "agentfactory_executor_sandbox_peak_memory_bytes",
    "Largest linear memory size reached per run.",
    buckets=(65536, 262144, 1 << 20, 4 << 20, 16 << 20, 32 << 20, 64 << 20, 256 << 20),
)
RUN_SECONDS = Histogram(
    "agentfactory_executor_run_duration_seconds",
    "Wall-clock time of a run in the sandbox (instantiation to exit).",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_DEPTH = Gauge("agentfactory_executor_queue_depth", "Runs waiting for a worker.")
POOL_SIZE = Gauge("agentfactory_executor_pool_workers", "Worker threads in the pool.")
POOL_BUSY = Gauge("agentfactory_executor_pool_busy", "Workers running a sandbox.")
MODULE_CACHE = Counter(
    "agentfactory_executor_module_cache_total",
    "Compiled-module lookups by level (memory, disk, registry) and result.",
    ["level", "result"],
)
COMPILE_SECONDS = Histogram(
    "agentfactory_executor_compile_seconds",
    "Time to compile a module with cranelift.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)
VERIFICATION_FAILURES = Counter(
    "agentfactory_executor_verification_failures_total",
    "Templates refused by verification, by check (signature, module_digest, policy, link, identity, files).",
    ["check"],
)
TOOL_CALLS = Counter("agentfactory_executor_tool_calls_total", "Tool calls by tool and result.", ["tool", "result"])
KEY_REFRESHES = Counter("agentfactory_executor_key_refreshes_total", "Public key refreshes by result.", ["result"])
KEY_PUSHES = Counter("agentfactory_executor_key_pushes_total", "Key sets received on the signer's WatchPublicKeys.")
KEY_REPLACED = Counter(
    "agentfactory_executor_key_replaced_total",
    "Key versions refused because the signer served another public key for a version already known.",
)
INLINE_RUNS = Counter(
    "agentfactory_executor_inline_runs_total",
    "Runs tried on the event loop's thread under the inline fuel budget: inline (ran there) or outgrown "
    "(over the budget: discarded and run again through the pool).",
    ["result"],
)
WARMUP_TEMPLATES = Gauge(
    "agentfactory_executor_warmup_templates",
    "Start-up warm-up (in the background, after SERVING): templates whose module it loaded, and those it left "
    "to load on first use (memory budget full or module too large).",
    ["result"],
)
WARMUP_DONE = Gauge("agentfactory_executor_warmup_done", "1 once the background start-up warm-up has finished.")
