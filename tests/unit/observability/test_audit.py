"""Audit events: one JSON object per line with event/actor/target/outcome, and the caller taken from the
mesh's x-forwarded-client-cert (a gateway-named principal believed only from the gateway)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from services.common import audit
from services.common.logs import JsonFormatter, caller_var

GATEWAY = "spiffe://agentfactory.local/sa/gateway"
SCHEDULER = "spiffe://agentfactory.local/sa/scheduler"
EXECUTOR = "spiffe://agentfactory.local/sa/executor"


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter("registry"))
    logger = logging.getLogger(audit.AUDIT_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield buf
    logger.removeHandler(handler)


def _events(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_record_writes_one_json_object_per_line(lines: io.StringIO) -> None:
    token = caller_var.set(GATEWAY)
    try:
        audit.record("publish", target="hello@1.0.0", module_sha256="ab" * 32)
        audit.record("policy_denial", target="/x/Y", outcome="denied", rule="tools.denylist")
    finally:
        caller_var.reset(token)
    first, second = _events(lines)
    assert first["event"] == "publish" and first["actor"] == GATEWAY and first["target"] == "hello@1.0.0"
    assert first["outcome"] == "ok" and first["logger"] == audit.AUDIT_LOGGER and first["service"] == "registry"
    assert second["outcome"] == "denied" and second["rule"] == "tools.denylist" and second["level"] == "warning"


def test_without_a_mesh_the_actor_is_local(lines: io.StringIO) -> None:
    audit.record("sign", target="agentfactory-templates")
    assert _events(lines)[0]["actor"] == "local"


def test_plain_audit_log_lines_get_the_actor_too(lines: io.StringIO) -> None:
    token = caller_var.set(SCHEDULER)
    try:
        logging.getLogger(audit.AUDIT_LOGGER).info("rotate", extra={"fields": {"event": "rotate"}})
    finally:
        caller_var.reset(token)
    assert _events(lines)[0]["actor"] == SCHEDULER


@pytest.mark.parametrize(
    ("xfcc", "expected"),
    [
        (f"Hash=abc;URI={SCHEDULER}", SCHEDULER),
        (f'By=spiffe://agentfactory.local/sa/registry;Hash=abc;URI="{GATEWAY}"', GATEWAY),
        (f"Hash=1;URI=spiffe://other/sa/x,Hash=2;URI={SCHEDULER}", SCHEDULER),  # nearest hop last
        ("Hash=abc", ""),
        ("", ""),
    ],
)
def test_peer_identity_from_xfcc(xfcc: str, expected: str) -> None:
    assert audit.peer_identity({"x-forwarded-client-cert": xfcc} if xfcc else {}) == expected


def test_principal_header_is_believed_only_from_the_gateway_and_a_relaying_scheduler() -> None:
    alice = "spiffe://agentfactory.local/role/publisher/user/alice"
    from_gateway = {"x-forwarded-client-cert": f"URI={GATEWAY}", "x-agentfactory-principal": alice}
    assert audit.caller_from_metadata(from_gateway) == f"{alice} via {GATEWAY}"
    # The gateway writes a certificate's SAN there; what is not one whole SPIFFE id names nobody.
    not_an_id = {**from_gateway, "x-agentfactory-principal": f"{alice},spiffe://agentfactory.local/role/admin/user/a"}
    assert audit.caller_from_metadata(not_an_id) == GATEWAY
    # A scheduler forwarding a call to the color that owns the agent passes on whom it served.
    relayed = {"x-forwarded-client-cert": f"URI={SCHEDULER}", "x-agentfactory-principal": f"alice via {GATEWAY}"}
    assert audit.caller_from_metadata(relayed) == f"alice via {GATEWAY} via {SCHEDULER}"
    forged = {"x-forwarded-client-cert": f"URI={EXECUTOR}", "x-agentfactory-principal": "admin"}
    assert audit.caller_from_metadata(forged) == EXECUTOR
    assert audit.caller_from_metadata({"x-agentfactory-principal": "admin"}) == "local"


def test_trace_helpers_are_free_no_ops_without_tracing() -> None:
    from services.common import telemetry

    assert not telemetry.tracing_enabled()
    assert telemetry.current_traceparent() == ""
    with telemetry.resumed("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), telemetry.span("x", a=1):
        pass


def test_jwt_subject_names_the_user_when_no_certificate_did() -> None:
    jwt_only = {"x-forwarded-client-cert": f"URI={GATEWAY}", "x-agentfactory-jwt-subject": "alice"}
    assert audit.caller_from_metadata(jwt_only) == f"jwt:alice via {GATEWAY}"
    forged = {"x-forwarded-client-cert": f"URI={EXECUTOR}", "x-agentfactory-jwt-subject": "alice"}
    assert audit.caller_from_metadata(forged) == EXECUTOR
