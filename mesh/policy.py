"""Load the per-service mesh policies (``mesh/policy/*.yaml``) and the gateway's role policy
(``gateway/policy.yaml``), check them against the contracts, and turn them into RBAC rules.

A policy that names a method the protos do not have, misses one they do have, or names an
unknown caller/role is an error at render time, not a silent hole at run time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mesh import REPO
from mesh.methods import HEALTH, PROTOS, REFLECTION, Method, contracts
from mesh.topology import ROLES, WORKLOADS, Topology
from services.common import mesh_headers, spiffe

POLICY_DIR = Path(__file__).resolve().parent / "policy"
GATEWAY_POLICY = REPO / "gateway" / "policy.yaml"
JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD_KEY = "jwt_payload"


class PolicyError(ValueError):
    """A policy file is inconsistent with the contracts or the topology."""


@dataclass(frozen=True)
class MethodPolicy:
    method: Method
    callers: tuple[str, ...]  # workload names, or ("*",) for any workload of the trust domain
    idempotent: bool
    long_lived: bool


@dataclass(frozen=True)
class ServicePolicy:
    service: str
    methods: Mapping[str, MethodPolicy]  # the service's own contract methods, by name
    health: tuple[MethodPolicy, ...]
    reflection: tuple[MethodPolicy, ...]

    def all(self) -> list[MethodPolicy]:
        return [*self.methods.values(), *self.health, *self.reflection]


@dataclass(frozen=True)
class RbacRule:
    """One named RBAC policy: any of ``paths`` for any of ``principals`` (Envoy principal dicts)."""

    name: str
    paths: tuple[str, ...]
    principals: tuple[dict[str, Any], ...]


def load_service_policy(service: str, policy_dir: Path = POLICY_DIR, protos: Path = PROTOS) -> ServicePolicy:
    path = policy_dir / f"{service}.yaml"
    raw = yaml.safe_load(path.read_text())
    if raw.get("service") != service:
        raise PolicyError(f"{path}: says service {raw.get('service')!r}, expected {service!r}")
    contract = contracts(protos).get(service)
    if not contract:
        raise PolicyError(f"no service {service!r} in {protos}")
    given: Mapping[str, Any] = raw.get("methods") or {}
    missing, unknown = sorted(set(contract) - set(given)), sorted(set(given) - set(contract))
    if missing or unknown:
        raise PolicyError(f"{path}: methods missing from policy {missing}, not in the protos {unknown}")

    def entry(method: Method, spec: Mapping[str, Any], where: str) -> MethodPolicy:
        callers = tuple(str(c) for c in spec.get("callers") or ())
        if not callers:
            raise PolicyError(f"{path}: {where} has no callers (omit nothing: deny is the default)")
        bad = [c for c in callers if c != "*" and c not in WORKLOADS]
        if bad:
            raise PolicyError(f"{path}: {where} names unknown callers {bad}; workloads are {WORKLOADS}")
        return MethodPolicy(method, callers, bool(spec.get("idempotent", False)), bool(spec.get("long_lived", False)))

    methods = {name: entry(contract[name], spec, name) for name, spec in given.items()}
    health_spec = raw.get("health") or {}
    refl_spec = raw.get("reflection") or {}
    # Health Check is a read (retry it); health Watch is a long-lived stream by design.
    health = tuple(
        entry(m, {**health_spec, "idempotent": m.name == "Check", "long_lived": m.name == "Watch"}, f"health {m.name}")
        for m in HEALTH
    )
    reflection = (
        tuple(entry(m, {**refl_spec, "idempotent": False}, "reflection") for m in REFLECTION) if refl_spec else ()
    )
    return ServicePolicy(service, methods, health, reflection)


def _header(name: str, match: dict[str, Any]) -> dict[str, Any]:
    return {"header": {"name": name, "string_match": match}}


def _regex(pattern: str) -> dict[str, Any]:
    # Envoy's safe_regex must match the whole value (RE2 full match): never a prefix.
    return {"safe_regex": {"regex": pattern}}


def identity_pattern(topo: Topology) -> str:
    """A whole id of this trust domain (services.common.spiffe's grammar), as Envoy's RE2 takes it."""
    return spiffe.id_pattern(topo.trust_domain)


def workload_principal(topo: Topology, caller: str) -> dict[str, Any]:
    """Matched on the caller's URI SANs as the sidecar wrote them (comma-joined), not on
    ``authenticated``: that one admits a certificate if *any* SAN matches, DNS SANs and the subject
    included. A whole-value match means one URI SAN, and exactly this id."""
    if caller == "*":
        # Any workload of our trust domain (the TLS layer already pinned the CA).
        pattern = rf"spiffe://{re.escape(topo.trust_domain)}/sa/{spiffe.SEGMENT_PATTERN}"
        return _header(mesh_headers.PEER, _regex(pattern))
    return _header(mesh_headers.PEER, {"exact": topo.spiffe_id(caller)})


def sidecar_rbac(topo: Topology, policy: ServicePolicy) -> list[RbacRule]:
    """Group methods by identical caller sets: one RBAC policy per distinct set of callers."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for mp in policy.all():
        groups.setdefault(tuple(sorted(mp.callers)), []).append(mp.method.path)
    return [
        RbacRule(
            name=f"{policy.service}<-{'+'.join(callers).replace('*', 'any-workload')}",
            paths=tuple(paths),
            principals=tuple(workload_principal(topo, c) for c in callers),
        )
        for callers, paths in groups.items()
    ]


# --- gateway ----------------------------------------------------------------------------------


def load_gateway_policy(topo: Topology, path: Path = GATEWAY_POLICY, protos: Path = PROTOS) -> dict[str, list[Method]]:
    """role -> the contract methods it may call through the gateway (expanded, de-duplicated)."""
    raw = yaml.safe_load(path.read_text())
    known = contracts(protos)
    routed = {svc: known[svc] for svc in topo.gateway.upstreams}
    groups: Mapping[str, list[str]] = raw.get("groups") or {}
    roles: Mapping[str, list[str]] = raw.get("roles") or {}
    if set(roles) != set(ROLES):
        raise PolicyError(f"{path}: roles must be exactly {ROLES}, got {sorted(roles)}")

    def expand(items: list[str], seen: tuple[str, ...] = ()) -> list[Method]:
        out: list[Method] = []
        for item in items:
            if item == "*":
                out += [m for ms in routed.values() for m in ms.values()]
            elif item.startswith("@"):
                group = item[1:]
                if group not in groups or group in seen:
                    raise PolicyError(f"{path}: unknown or recursive group {item!r}")
                out += expand(groups[group], (*seen, group))
            else:
                svc, _, name = item.partition(".")
                if svc not in known or (name != "*" and name not in known[svc]):
                    raise PolicyError(f"{path}: {item!r} is not a method in the protos")
                if svc not in routed:
                    continue  # a smaller topology whose gateway does not route this service
                out += list(routed[svc].values()) if name == "*" else [routed[svc][name]]
        return out

    result: dict[str, list[Method]] = {}
    for role in ROLES:
        unique: dict[str, Method] = {}
        for m in expand(list(roles[role])):
            unique.setdefault(m.path, m)
        result[role] = list(unique.values())
    return result


def role_principals(topo: Topology, role: str) -> tuple[dict[str, Any], ...]:
    """A client holds ``role`` if its certificate or its (verified) JWT says so. The certificate's
    URI SANs reach RBAC in the principal header the gateway writes (comma-joined): a whole-value
    match means exactly one SAN, ``.../role/<role>/user/<name>``."""
    pattern = rf"spiffe://{re.escape(topo.trust_domain)}/role/{role}/user/{spiffe.SEGMENT_PATTERN}"
    return (
        _header(mesh_headers.PRINCIPAL, _regex(pattern)),
        {
            # Dynamic metadata written by jwt_authn (payload_in_metadata) for a verified token only.
            "sourced_metadata": {
                "metadata_matcher": {
                    "filter": JWT_FILTER,
                    "path": [{"key": JWT_PAYLOAD_KEY}, {"key": "role"}],
                    "value": {"string_match": {"exact": role}},
                }
            }
        },
    )


def gateway_rbac(topo: Topology, role_methods: Mapping[str, list[Method]]) -> list[RbacRule]:
    rules = [
        RbacRule(f"role:{role}", tuple(m.path for m in methods), role_principals(topo, role))
        for role, methods in role_methods.items()
        if methods
    ]
    # grpcurl needs reflection and everyone may ask for health, but only once authenticated.
    anyone = tuple(p for role in ROLES for p in role_principals(topo, role))
    rules.append(RbacRule("authenticated:health+reflection", tuple(m.path for m in (*HEALTH, *REFLECTION)), anyone))
    return rules
