"""Request headers the mesh and the services agree on. The Envoy templates (gateway/envoy.yaml.j2,
mesh/templates/) and mesh/routes.py spell the same names; tests/unit/common/test_mesh_headers.py
checks that they still do."""

from __future__ import annotations

# The direct caller's mTLS identity, set by the inbound sidecar (a client's own value is replaced).
XFCC = "x-forwarded-client-cert"
# The end user behind the gateway (its client certificate's SAN), set by the gateway alone.
PRINCIPAL = "x-agentfactory-principal"
# Every URI SAN of the direct caller's certificate, comma-joined, set by the inbound sidecar alone:
# what its identity gate and RBAC match (exactly one SAN, a whole id of services.common.spiffe).
PEER = "x-agentfactory-peer"
# The subject of the end user's JWT, set by the gateway's jwt_authn filter alone.
JWT_SUBJECT = "x-agentfactory-jwt-subject"
# A call naming a color goes to that color of a blue/green service, whatever the weights.
COLOR = "x-agentfactory-color"
# A scheduler forwarding a call to the color that owns the agent; the gateway drops a client's.
FORWARDED_BY = "x-agentfactory-forwarded-by"
# Trailer of a refused or failed Run: the executor that answered (its caller only knows its sidecar).
EXECUTOR = "x-agentfactory-executor"
