"""The data plane's trace: RunAgent at the scheduler → Run at the executor, in one trace, with the
executor's server span under the scheduler's client span (no mesh yet: direct loopback calls)."""

from __future__ import annotations

from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from tests.harness_otlp import ReceivedSpan, children, spans_when
from tests.integration.observability.conftest import Stack

RUN_AGENT = "/agentfactory.scheduler.v1.SchedulerService/RunAgent"
RUN = "/agentfactory.executor.v1.ExecutorService/Run"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
EDGE_SPAN = "b7ad6b7169203331"


def _under(spans: list[ReceivedSpan], root: ReceivedSpan, service: str, kind: str, name: str) -> list[ReceivedSpan]:
    """Spans of (service, kind, name) anywhere below `root` (domain spans may sit in between)."""
    found, frontier = [], [root]
    while frontier:
        node = frontier.pop()
        for child in children(spans, node):
            if (child.service, child.kind, child.name) == (service, kind, name):
                found.append(child)
            frontier.append(child)
    return found


def test_run_agent_traces_scheduler_to_executor(stack: Stack) -> None:
    metadata = (("traceparent", f"00-{TRACE_ID}-{EDGE_SPAN}-01"),)
    request = sch_pb.RunAgentRequest(template_name="echo-upper", input=b"traced")
    assert list(stack.client.scheduler.RunAgent(request, timeout=30, metadata=metadata))

    def complete(spans: list[ReceivedSpan]) -> bool:
        roots = [s for s in spans if s.trace_id == TRACE_ID and s.name == RUN_AGENT and s.kind == "server"]
        return any(
            _under(spans, c, "executor", "server", RUN)
            for r in roots
            for c in _under(spans, r, "scheduler", "client", RUN)
        )

    spans = spans_when(stack.receiver, complete, "scheduler to executor spans")
    root = next(s for s in spans if s.trace_id == TRACE_ID and s.name == RUN_AGENT and s.kind == "server")
    assert root.service == "scheduler" and root.parent_span_id == EDGE_SPAN

    # Domain spans sit under the service spans of the same trace: where the time went inside each hop.
    def has_domain_spans(spans: list[ReceivedSpan]) -> bool:
        names = {(s.service, s.name) for s in spans if s.trace_id == TRACE_ID and s.kind == "internal"}
        wanted = {("executor", n) for n in ("template_lookup", "verify_signature", "module_lookup", "sandbox_run")}
        return wanted | {("scheduler", "journal_write")} <= names

    spans = spans_when(stack.receiver, has_domain_spans, "the domain spans")
    (run_server,) = [s for s in spans if s.trace_id == TRACE_ID and s.service == "executor" and s.name == RUN]
    for name in ("verify_signature", "sandbox_run"):
        assert _under(spans, run_server, "executor", "internal", name), f"{name} is not under the executor's Run span"
