"""Scheduler metrics (the RPC histograms come from services.common.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS

AGENTS_CREATED = Counter(
    "agentfactory_scheduler_agents_created_total", "Agents accepted and journaled, by template.", ["template"]
)
TRANSITIONS = Counter(
    "agentfactory_scheduler_state_transitions_total",
    "Agent state transitions, by source state, target state and cause (terminal states only carry a cause).",
    ["from_state", "to_state", "cause"],
)
OUTCOMES = Counter(
    "agentfactory_scheduler_agents_finished_total",
    "Agents that reached a terminal state, by state and cause.",
    ["state", "cause"],
)
PENDING = Gauge("agentfactory_scheduler_pending_agents", "Agents journaled and waiting for an executor (queue depth).")
IN_FLIGHT = Gauge("agentfactory_scheduler_dispatches_in_flight", "Agents being dispatched or run on an executor.")
JOURNAL_COMMIT = Histogram(
    "agentfactory_scheduler_journal_commit_seconds",
    "Time to write and commit (fsync) one journal batch.",
    buckets=LATENCY_BUCKETS,
)
JOURNAL_BATCH = Histogram(
    "agentfactory_scheduler_journal_batch_size",
    "Journal writes per committed batch (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
DISPATCH_RETRIES = Counter(
    "agentfactory_scheduler_dispatch_retries_total",
    "Dispatches retried: executor full or unavailable before starting, or a run lost and re-dispatched.",
    ["reason"],
)
RECOVERED = Counter(
    "agentfactory_scheduler_recovered_agents_total",
    "Unfinished agents found in the journal at start-up, by what recovery did with them.",
    ["action"],
)
PEER_CALLS = Counter(
    "agentfactory_scheduler_peer_calls_total",
    "Calls to another color's scheduler about an agent or request id this one did not create (blue/green), "
    "by method and result: ok, not_found or unreachable.",
    ["method", "result"],
)
