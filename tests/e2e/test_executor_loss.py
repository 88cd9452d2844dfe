"""An executor that hangs (SIGSTOP: alive, connected, silent) in the middle of a run.

Nothing closes its connections, so only the sidecar's HTTP/2 keepalive on its connection to the app
(resilience.keepalive_interval/_timeout) can notice: the unanswered PING closes the connection, the
Run stream breaks, and the scheduler re-runs the retryable agent on the other executor. Before, the
run stayed RUNNING for its timeout plus 30 s of slack and ended TIMED_OUT after one attempt.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Callable

from afctl.client import Client
from agentfactory.scheduler.v1 import scheduler_service_pb2 as S
from tests.e2e.templates import publish_retryable_spinner
from tests.harness import eventually
from tests.harness_mesh import E2EMesh

TIMEOUT = 15.0
EXECUTORS = ("executor-blue", "executor-green")
CALLERS = ("scheduler-blue", "scheduler-green")
ENDED = (S.AGENT_STATE_SUCCEEDED, S.AGENT_STATE_FAILED, S.AGENT_STATE_TIMED_OUT, S.AGENT_STATE_CANCELLED)


def _health(mesh: E2EMesh, caller: str, executor: str) -> str:
    """The executor's health flags in the caller's sidecar (its own color's cluster)."""
    url = f"http://127.0.0.1:{mesh.topo.instance(caller).admin}/clusters"
    with urllib.request.urlopen(url, timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    mine = [ln for ln in lines if ln.startswith(f"{executor}::")]
    hosts = {ln.split("::")[1] for ln in mine if ln.endswith(f"::hostname::{executor}")}
    flags = [ln.rsplit("::", 1)[-1] for ln in mine if ln.split("::")[1] in hosts and "::health_flags::" in ln]
    return flags[0] if flags else ""


def _get(op: Client, agent_id: str) -> S.Agent:
    return op.scheduler.GetAgent(S.GetAgentRequest(id=agent_id), timeout=TIMEOUT, metadata=op.metadata).agent


def test_a_stopped_executor_mid_run_is_cut_off_and_the_agent_re_run_elsewhere(
    e2e_mesh: E2EMesh, as_role: Callable[[str], Client]
) -> None:
    publisher, op = as_role("publisher"), as_role("operator")
    # An endless loop with fuel for a few seconds: long enough to be frozen mid-run, and it ends the
    # same way wherever it runs (its fuel), so a re-run is visible in `attempts` and `executor`.
    name = publish_retryable_spinner(publisher, "e2e-stalled")
    agent = op.scheduler.CreateAgent(
        S.CreateAgentRequest(template_name=name), timeout=TIMEOUT, metadata=op.metadata
    ).agent
    while agent.state == S.AGENT_STATE_PENDING:  # however long a loaded machine takes to place it
        time.sleep(0.02)
        agent = _get(op, agent.id)
    assert agent.state == S.AGENT_STATE_RUNNING and agent.executor in EXECUTORS, agent
    frozen = agent.executor
    pid = e2e_mesh.pid(frozen)
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        # No bound on the wait: how the agent ends says whether keepalive cut the frozen run off (without
        # it the agent would end TIMED_OUT after ~60 s, on the frozen executor, after one attempt).
        while agent.state not in ENDED:
            time.sleep(0.2)
            agent = _get(op, agent.id)
        took = time.monotonic() - stopped
        # The mesh's own figure: the callers' sidecars flag the stopped host (its health checks time
        # out), so no new run goes there while it is stopped.
        for s in CALLERS:
            marked = lambda s=s: _health(e2e_mesh, s, frozen) not in ("", "healthy")  # noqa: E731
            eventually(marked, f"{s}'s sidecar flagging {frozen}", broken=e2e_mesh.broken)
        flags = {s: _health(e2e_mesh, s, frozen) for s in CALLERS}
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"executor {frozen} stopped mid-run; agent ended {S.AgentState.Name(agent.state)} {took:.1f} s later")
    # Re-run on the other executor to its own end (the fuel), not timed out on the frozen one.
    assert agent.state == S.AGENT_STATE_FAILED and "fuel" in agent.reason, agent
    assert agent.attempts == 2, agent
    assert agent.executor in EXECUTORS and agent.executor != frozen, agent
    # (Each sidecar's flag was awaited above: `eventually` returned only once it was set.)
    print(f"{frozen} as the schedulers' sidecars saw it: {flags}")
