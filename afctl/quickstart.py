"""What `make run` does once the mesh is up: publish the examples through the gateway, run one agent
end to end, and print where everything is. Safe to run again (publishing is idempotent)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from afctl.client import Client, Endpoints, Tls
from afctl.examples import REPO, catalogue
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb

GATEWAY = "localhost:8443"
CERTS = REPO / "build" / "certs"
PROMETHEUS = "127.0.0.1:9090"
TRACES = REPO / "var" / "traces" / "spans.jsonl"

# The endpoints and commands printed at the end. Placeholders are filled by `endpoints()`, so a mesh
# on other ports (the end-to-end tests run one) prints commands that work against it.
ENDPOINTS = """
Agent Factory is up.
  gateway (the only client port)  {gateway}   mTLS client certs in {certs}/clients/<role>/, or a JWT:
                                                   make -s mesh-token ROLE=operator
  Prometheus (metrics, alerts)    http://{prometheus}
  per-process metrics             127.0.0.1:73xx/metrics, Envoy admin 127.0.0.1:74xx (see mesh/topology.yaml)
  logs                            var/log/<process>.log      status: make mesh-status
  traces (every Envoy and app)    {traces}, from the OTLP trace sink
                                  .venv/bin/python -m afctl traces list      then: afctl traces show <trace-id>
  audit (security events, RBAC)   .venv/bin/python -m afctl audit [--event publish,rbac_denial] [--since 1h]

Try it:
  build/bin/grpcurl -cacert {certs}/ca/bundle.pem -cert {certs}/clients/operator/cert.pem \\
    -key {certs}/clients/operator/key.pem -d '{{"template_name": "echo-upper", "input": "aGVsbG8="}}' \\
    {gateway} agentfactory.scheduler.v1.SchedulerService/RunAgent
  .venv/bin/python -m afctl --gateway {gateway} --ca {certs}/ca/bundle.pem \\
    --cert {certs}/clients/operator/cert.pem --key {certs}/clients/operator/key.pem run echo-upper -i hello

Stop everything with: make stop
"""


def _shown(path: Path) -> str:
    # Relative to the repository when inside it: the commands are meant to be pasted from its root.
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def endpoints(gateway: str = GATEWAY, certs: Path = CERTS, prometheus: str = PROMETHEUS, traces: Path = TRACES) -> str:
    return ENDPOINTS.format(gateway=gateway, certs=_shown(certs), prometheus=prometheus, traces=_shown(traces))


def client_for(role: str, gateway: str = GATEWAY, certs: Path = CERTS) -> Client:
    tls = Tls(certs / "ca" / "bundle.pem", certs / "clients" / role / "cert.pem", certs / "clients" / role / "key.pem")
    return Client(Endpoints.gateway(gateway, tls), timeout=15)


def wait_for_gateway(client: Client, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.list_templates(page_size=1)
            return
        except grpc.RpcError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the gateway did not answer in {seconds:.0f} s: {exc.code().name} {exc.details()}"
                ) from None
            time.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m afctl.quickstart", description=__doc__.split("\n")[0])
    parser.add_argument("--gateway", default=GATEWAY, help="gateway host:port")
    parser.add_argument("--certs-dir", type=Path, default=CERTS, help="the mesh CA and client certificates")
    parser.add_argument("--prometheus-addr", default=PROMETHEUS, help="shown in the endpoints")
    parser.add_argument("--traces-file", type=Path, default=TRACES, help="the trace sink's span file, shown")
    args = parser.parse_args(argv)
    with client_for("publisher", args.gateway, args.certs_dir) as publisher:
        wait_for_gateway(publisher)
        print("publishing the example templates through the gateway (publisher role):")
        for example in catalogue("agents"):
            reply = publisher.publish(example.manifest_json(), example.module(), files=example.files())
            state = "published" if reply.created else "unchanged"
            print(f"  {example.ref:<24} {state:<10} signed with key v{reply.template.signature.key_version}")
        template = publisher.get_template("text-stats")
        version = publisher.verify_offline(template, publisher.fetch_module(template.manifest.module_sha256))
        print(f"  text-stats verified offline against the signer's public key v{version}")
    text = {"text": "Agent Factory turns signed templates into sandboxed agents. Agents run in wasm."}
    with client_for("operator", args.gateway, args.certs_dir) as operator:
        print("\nrunning text-stats end to end (gateway -> scheduler -> executor sandbox):")
        # Our own W3C trace context: the gateway continues it, so we know the run's trace id.
        trace_id = os.urandom(16).hex()
        traceparent = (("traceparent", f"00-{trace_id}-{os.urandom(8).hex()}-01"),)
        agent, output = operator.run_to_end("text-stats", json.dumps(text).encode(), metadata=traceparent)
    state = sch_pb.AgentState.Name(agent.state).removeprefix("AGENT_STATE_")
    print(f"  agent {agent.id}: {state}, exit {agent.exit_code}, fuel {agent.fuel_used:,}, on {agent.executor}")
    print(f"  output: {output.decode(errors='replace').strip()}")
    print(
        f"  its trace (whole a second or two later): .venv/bin/python -m afctl traces show {trace_id}"
        f" --file {_shown(args.traces_file)}"
    )
    print(endpoints(args.gateway, args.certs_dir, args.prometheus_addr, args.traces_file))
    return 0 if agent.state == sch_pb.AGENT_STATE_SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
