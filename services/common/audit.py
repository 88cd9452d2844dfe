"""The audit log: one JSON object per line on the `agentfactory.audit` logger, for every security event.

Each event carries `event` (publish, sign, rotate, revoke, run_started, policy_denial, ...), `actor`
(who asked), `target` (what it was about: name@version, key id, method) and `outcome` (ok, denied,
failed), plus the usual log fields (ts, service, request_id, trace_id). Domain code calls `record()`
and never handles identities itself: the server interceptor puts the caller into `caller_var` for the
duration of each RPC.

Who the caller is comes from the mesh. The caller's sidecar-terminated mTLS identity reaches the app in
`x-forwarded-client-cert` (URI=spiffe://<domain>/sa/<workload>), set by the inbound sidecar, which
strips any value a client sent. An end user behind the gateway is named by the gateway in
`x-agentfactory-principal`; that header is believed only when the direct peer *is* the gateway (or a
scheduler relaying a call to the color that owns the agent), so other workloads cannot claim to be
someone else. Without a mesh (local development, tests) the caller is
"local" — plaintext loopback has no identity to report. Every id is parsed whole (services.common.spiffe):
a value that does not fit the mesh's grammar names nobody, and who may vouch for an end user is decided by
the parsed workload name, never by a suffix of the text.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping

from services.common import mesh_headers, spiffe
from services.common.logs import AUDIT_LOGGER, caller_var, log_event

UNAUTHENTICATED = "local"
# Workloads whose word on the end user is believed (everyone else is named by its own certificate).
PRINCIPAL_SOURCES = frozenset({"gateway", "scheduler"})
INVALID_PEER = "invalid-peer"  # an XFCC URI that is not an id of the mesh (Envoy should have refused it)
MAX_SUBJECT = 128  # a JWT subject is quoted into logs: at most this many characters of it
MAX_FORWARDED = 2 * spiffe.MAX_ID_LENGTH + 16  # "<id> via <id>", as a scheduler relays it

_log = logging.getLogger(AUDIT_LOGGER)
_XFCC_URI = re.compile(r'(?:^|;)URI="?([^;,"]*)"?')


@functools.lru_cache(maxsize=256)
def _parse_xfcc(xfcc: str) -> spiffe.SpiffeId | str | None:
    """The nearest hop's parsed id; None when it names no URI; INVALID_PEER when the URI is not an id.
    Cached: a connection's XFCC is the same on every call, and this runs on every RPC."""
    nearest = xfcc.rsplit(",", 1)[-1]  # with APPEND_FORWARD, the last element is the closest hop
    match = _XFCC_URI.search(nearest)
    if match is None or not match.group(1):
        return None
    return spiffe.parse_or_none(match.group(1)) or INVALID_PEER


def _peer(metadata: Mapping[str, str]) -> spiffe.SpiffeId | str | None:
    xfcc = metadata.get(mesh_headers.XFCC, "")
    return _parse_xfcc(xfcc[: spiffe.MAX_ID_LENGTH * 2]) if xfcc else None


def peer_identity(metadata: Mapping[str, str]) -> str:
    """The SPIFFE ID of the direct caller, from the nearest XFCC element; "" without a sidecar."""
    peer = _peer(metadata)
    return "" if peer is None else str(peer)


def caller_from_metadata(metadata: Mapping[str, str]) -> str:
    peer = _peer(metadata)
    if peer is None:
        return UNAUTHENTICATED
    if isinstance(peer, str):
        return peer  # INVALID_PEER
    if peer.workload in PRINCIPAL_SOURCES:
        # The gateway names the end user: its client certificate's SAN, or the JWT's subject. A
        # scheduler forwarding a call to the color that owns the agent passes on whom it served.
        principal = metadata.get(mesh_headers.PRINCIPAL, "")
        if peer.workload == "gateway" and principal and spiffe.parse_or_none(principal) is None:
            principal = ""  # the gateway sets a certificate's SAN: one that is not an id names nobody
        principal = principal[:MAX_FORWARDED]  # a scheduler relays a caller it described itself
        if not principal and (subject := metadata.get(mesh_headers.JWT_SUBJECT, "")):
            principal = f"jwt:{subject[:MAX_SUBJECT]}"
        if principal:
            return f"{principal} via {peer}"
    return str(peer)


def record(event: str, *, target: str, outcome: str = "ok", actor: str | None = None, **fields: object) -> None:
    """Write one audit event. `actor` defaults to the caller of the RPC being served."""
    log_event(
        _log,
        event,
        logging.WARNING if outcome == "denied" else logging.INFO,
        event=event,
        actor=actor or caller_var.get() or UNAUTHENTICATED,
        target=target,
        outcome=outcome,
        **fields,
    )
