"""One call at the gateway yields ONE trace through the real mesh (supervisord, Envoy sidecars and
gateway with their OpenTelemetry tracer, the four services exporting over OTLP), in this order:

    gateway                 server  ingress  RunAgent            (Envoy: the root)
      scheduler-blue        server  ingress  RunAgent            (Envoy: inbound sidecar)
        scheduler           server  RunAgent                     (app)
          scheduler         client  GetTemplate                  (app: resolves the fresh version)
            scheduler-blue  client  egress   GetTemplate         (Envoy: outbound listener)
              registry      server  ingress  GetTemplate         (Envoy)
                registry    server  GetTemplate                  (app)
          scheduler         client  Run
            scheduler-blue  client  egress   Run
              executor-blue server  ingress  Run
                executor    server  Run                          (app; its sandbox spans below)

The executor precompiles a freshly published version when the registry's watch stream announces
it (hot reload), normally before the first run asks for it: then its Run span has no registry call
under it, and the registry's part of this trace is the scheduler resolving the version (always a
miss: a version nobody resolved before). When the run does get there first (an executor cache
miss), the executor's GetTemplate/FetchModule calls must sit under its Run span with their whole
chain through its outbound sidecar to the registry. The scheduler admits no way to force that miss
(deprecated versions are refused before dispatch), so it is checked when it happens.
"""

from __future__ import annotations

import os
import subprocess
import sys

from observability.trace_sink import Span, children, traces
from tests.harness import REPO
from tests.harness_otlp import spans_when
from tests.integration.observability.conftest import TracedMesh, echo_template, manifest_with

RUN_AGENT = "/agentfactory.scheduler.v1.SchedulerService/RunAgent"
GET_TEMPLATE = "/agentfactory.registry.v1.RegistryService/GetTemplate"
FETCH_MODULE = "/agentfactory.registry.v1.RegistryService/FetchModule"
RUN = "/agentfactory.executor.v1.ExecutorService/Run"


def _is(span: Span, service: str, kind: str, method: str) -> bool:
    """App spans are named by their method; Envoy spans ("ingress"/"egress ...") carry it as grpc.path."""
    named = span.name == method or span.attributes.get("grpc.path") == method
    return span.service == service and span.kind == kind and named


def _child(spans: list[Span], parent: Span | None, service: str, kind: str, method: str) -> Span | None:
    if parent is None:
        return None
    return next((s for s in children(spans, parent) if _is(s, service, kind, method)), None)


def _descend(spans: list[Span], parent: Span | None, *steps: tuple[str, str, str]) -> list[Span | None]:
    """Follow `steps` (service, kind, method) child by child; None from the first missing link on."""
    out: list[Span | None] = []
    for step in steps:
        parent = _child(spans, parent, *step)
        out.append(parent)
    return out


def _call_chain(spans: list[Span], app_client: Span | None, sidecar: str, upstream: str, method: str) -> list:
    """app client span → its sidecar's egress span → the upstream's ingress span → the upstream app."""
    service = upstream.split("-")[0]
    return _descend(
        spans, app_client, (sidecar, "client", method), (upstream, "server", method), (service, "server", method)
    )


def _orphans(trace: list[Span]) -> list[Span]:
    ids = {s.span_id for s in trace}
    return [s for s in trace if s.parent_span_id and s.parent_span_id not in ids]


def _run_at_gateway(mesh: TracedMesh, version: str) -> Span:
    """Publish `version` of echo-upper, run it once through the gateway, return the gateway's span."""
    _, module = echo_template()
    mesh.mesh.client("publisher", timeout=15).publish(manifest_with(version=version), module)
    before = {s.span_id for s in mesh.receiver.spans() if _is(s, "gateway", "server", RUN_AGENT)}
    agent, output = mesh.mesh.client("operator", timeout=30).run_to_end("echo-upper", b"traced", version=version)
    assert output == b"TRACED", agent

    def arrived(spans: list[Span]) -> bool:
        return any(_is(s, "gateway", "server", RUN_AGENT) and s.span_id not in before for s in spans)

    spans = spans_when(mesh.receiver, arrived, "the gateway's RunAgent span")
    return next(s for s in spans if _is(s, "gateway", "server", RUN_AGENT) and s.span_id not in before)


def _tree(spans: list[Span], gateway: Span) -> dict[str, list]:
    sidecar = _child(spans, gateway, "scheduler-blue", "server", RUN_AGENT)
    scheduler = _child(spans, sidecar, "scheduler", "server", RUN_AGENT)
    resolve = _child(spans, scheduler, "scheduler", "client", GET_TEMPLATE)
    dispatch = _child(spans, scheduler, "scheduler", "client", RUN)
    return {
        "front": [sidecar, scheduler],
        "resolve": [resolve, *_call_chain(spans, resolve, "scheduler-blue", "registry", GET_TEMPLATE)],
        "dispatch": [dispatch, *_call_chain(spans, dispatch, "scheduler-blue", "executor-blue", RUN)],
    }


def _complete(tree: dict[str, list]) -> bool:
    return all(all(chain) for chain in tree.values())


def _executor_registry_calls(spans: list[Span], executor_run: Span) -> list[list]:
    """The executor's calls to the registry made while serving this run (a cache miss), as chains."""
    chains = []
    frontier = [executor_run]
    while frontier:
        node = frontier.pop()
        for child in children(spans, node):
            if child.service == "executor" and child.kind == "client" and child.name in (GET_TEMPLATE, FETCH_MODULE):
                chains.append([child, *_call_chain(spans, child, "executor-blue", "registry", child.name)])
            elif child.service == "executor":
                frontier.append(child)  # through the executor's domain spans
    return chains


def _assert_one_trace(mesh: TracedMesh, gateway: Span) -> tuple[list[Span], dict[str, list]]:
    def whole(spans: list[Span]) -> bool:
        trace = traces(spans).get(gateway.trace_id, [])
        return _complete(_tree(trace, gateway)) and not _orphans(trace)

    spans = spans_when(mesh.receiver, whole, "the whole trace, every hop")
    trace = traces(spans)[gateway.trace_id]
    assert gateway.parent_span_id == "", "the gateway starts the trace"
    tree = _tree(trace, gateway)
    # Every hop of the call, Envoy and app, reached the receiver in this one trace.
    services = {s.service for s in trace}
    assert {"gateway", "scheduler-blue", "scheduler", "registry", "executor-blue", "executor"} <= services
    assert all(s.status_code != 2 for chain in tree.values() for s in chain), tree
    return trace, tree


def test_one_call_at_the_gateway_is_one_trace_through_every_hop(traced_mesh: TracedMesh) -> None:
    gateway = _run_at_gateway(traced_mesh, "3.0.0")
    trace, tree = _assert_one_trace(traced_mesh, gateway)
    executor_run = tree["dispatch"][-1]
    # Precompiled on the watch event (no registry call under the run) or fetched on a miss (the whole
    # chain under the run): both real, neither may be broken.
    for chain in _executor_registry_calls(trace, executor_run):
        assert all(chain), f"executor → registry chain broken: {chain}"
    # The sink's reader shows the same tree (what `afctl traces show` prints).
    shown = _afctl("traces", "show", gateway.trace_id[:12], "--file", str(traced_mesh.spans_file))
    for needle in ("ingress " + RUN_AGENT, "egress " + RUN, "executor-blue", "registry", GET_TEMPLATE):
        assert needle in shown, shown
    listed = _afctl("traces", "list", "--file", str(traced_mesh.spans_file), "--contains", "RunAgent")
    assert gateway.trace_id in listed, listed


def test_a_clients_traceparent_is_continued_by_the_gateway(traced_mesh: TracedMesh) -> None:
    """What `make run`'s quickstart relies on to print its run's trace id."""
    trace_id, edge = os.urandom(16).hex(), os.urandom(8).hex()
    operator = traced_mesh.mesh.client("operator", timeout=30)
    _, output = operator.run_to_end("echo-upper", b"x", metadata=(("traceparent", f"00-{trace_id}-{edge}-01"),))
    assert output == b"X"

    def arrived(spans: list[Span]) -> bool:
        trace = traces(spans).get(trace_id, [])
        gateway = next((s for s in trace if _is(s, "gateway", "server", RUN_AGENT)), None)
        return gateway is not None and _complete(_tree(trace, gateway))

    spans = spans_when(traced_mesh.receiver, arrived, "the spans")
    gateway = next(s for s in traces(spans)[trace_id] if _is(s, "gateway", "server", RUN_AGENT))
    assert gateway.parent_span_id == edge


def _afctl(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "afctl", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout
