"""What each client role may call through the gateway, written out by hand from the issue (not read
from gateway/policy.yaml) so the tests check the policy files instead of repeating them."""

from __future__ import annotations

from mesh.methods import contracts

ROLES = ("admin", "publisher", "operator", "viewer")
ALL = {f"{svc}.{name}" for svc, methods in contracts().items() for name in methods}
VIEWS = {
    "registry.GetTemplate",
    "registry.ListTemplates",
    "registry.WatchTemplates",
    "scheduler.GetAgent",
    "scheduler.ListAgents",
    "scheduler.WatchAgent",
    "signer.GetPublicKeys",
    "signer.WatchPublicKeys",
    "executor.GetCapacity",
}
READS = VIEWS | {"registry.FetchModule", "signer.Verify"}
# What the gateway's role RBAC lets through.
GATEWAY_ALLOWS = {
    "admin": ALL,
    "publisher": READS | {"registry.PublishTemplate", "registry.DeprecateTemplate"},
    "operator": READS | {f"scheduler.{name}" for name in contracts()["scheduler"]},
    "viewer": READS,  # issue 10: `afctl templates verify` (FetchModule, Verify) is a read
}
# Even an admin cannot reach these: the sidecars admit only the registry (Sign) and the scheduler (Run).
MESH_DENIES_GATEWAY = {"signer.Sign", "executor.Run"}
# What reaches a service end to end: the gateway's matrix under the mesh's.
END_TO_END_ALLOWS = {role: allowed - MESH_DENIES_GATEWAY for role, allowed in GATEWAY_ALLOWS.items()}
