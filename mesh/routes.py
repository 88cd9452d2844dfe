"""Route configurations (served to Envoy by file-based RDS) for sidecars and the gateway.

Routes are data, not template text, because ``mesh.weights`` rewrites them while Envoy runs:
the weights are the only thing that changes between two renders.

Per method, from the policy files:
- every route has ``timeout: 0s``: Envoy's default 15 s route timeout would cut long streams and
  counts retries against the same clock. Instead ``max_stream_duration`` honours the client's
  ``grpc-timeout`` (capped for unary calls) and caps unary calls that send none;
- long-lived streams (Watch*, and runs that may compute silently) get a long per-route
  ``idle_timeout`` instead of the HCM default; unary calls are bounded by their deadline only;
- idempotent methods are retried on UNAVAILABLE / RESOURCE_EXHAUSTED (plus connect failures and
  refused streams, which never reached the app) on another host; nothing else is retried.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mesh.gateway_health import health_route, lua_source
from mesh.policy import MethodPolicy, ServicePolicy
from mesh.topology import Service, Topology

ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
# A call carrying this header goes to that color of a blue/green service, whatever the weights: how
# a scheduler reaches the color that owns an agent, and how an operator tries a color before
# shifting traffic to it.
COLOR_HEADER = "x-agentfactory-color"
RETRY_ON = "unavailable,resource-exhausted,connect-failure,refused-stream"
PREVIOUS_HOSTS = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
PREVIOUS_PRIORITIES = (
    "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig"
)


@dataclass(frozen=True)
class Target:
    """Where a route sends traffic: one cluster, or clusters split by weight."""

    cluster: str | None = None
    weighted: tuple[tuple[str, int], ...] = ()

    def action(self) -> dict[str, Any]:
        if self.cluster:
            return {"cluster": self.cluster}
        return {"weighted_clusters": {"clusters": [{"name": n, "weight": w} for n, w in self.weighted]}}


def target_for(svc: Service, weights: Mapping[str, Mapping[str, int]]) -> Target:
    if not svc.colors:
        return Target(cluster=svc.name)
    split = weights[svc.name]
    return Target(weighted=tuple((f"{svc.name}-{color}", int(split[color])) for color in svc.colors))


def route(mp: MethodPolicy, target: Target, topo: Topology, *, retries: bool, failover: bool = False) -> dict[str, Any]:
    t = topo.timeouts
    action: dict[str, Any] = {**target.action(), "timeout": "0s"}
    # Streams: Envoy does not enforce the client's grpc-timeout (no max_stream_duration). The client
    # ends the call at its deadline (and the server, which gets the header too, ends it there as
    # well), so the client sees DEADLINE_EXCEEDED. When Envoy enforced it on a stream whose response
    # had started, its reset raced the client's timer and about one call in four ended INTERNAL.
    # Bounded streams (FetchModule) last as long as the work: the client's deadline, if any, is the
    # bound, and the HCM stream idle timeout catches a peer that stopped sending.
    if mp.long_lived:
        # No cap at all; quiet for up to long_lived_idle.
        action["idle_timeout"] = t["long_lived_idle"]
    elif not mp.method.streaming:
        action["max_stream_duration"] = {
            "max_stream_duration": t["unary_max"],
            "grpc_timeout_header_max": t["grpc_timeout_max"],
        }
        # A unary call is "idle" for as long as the server thinks: let the deadline be the bound,
        # not the stream idle timeout (which would cut a 60 s call that asked for 90 s).
        action["idle_timeout"] = t["grpc_timeout_max"]
    if retries and mp.idempotent:
        r = topo.resilience
        action["retry_policy"] = {
            "retry_on": RETRY_ON,
            "num_retries": int(r["retries"]),
            # Try a different host each time when there is one.
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {"@type": PREVIOUS_HOSTS},
                }
            ],
            # Each selection is a fresh (random) balancing pick; with two hosts, 3 picks still land on
            # the failed one 1 time in 8, which let a retry hit the same failing executor.
            "host_selection_retry_max_attempts": 10,
            "retry_back_off": {"base_interval": "0.025s", "max_interval": "0.25s"},
        }
        if failover:
            # The cluster's fallback color is priority 1, which a plain retry never reaches while the
            # failing host still counts as healthy: after two attempts on this color's priority the
            # last retry goes to the other color (a one-host color's second attempt repeats its host).
            action["retry_policy"]["retry_priority"] = {
                "name": "envoy.retry_priorities.previous_priorities",
                "typed_config": {"@type": PREVIOUS_PRIORITIES, "update_frequency": 2},
            }
    return {"name": mp.method.path.lstrip("/"), "match": {"path": mp.method.path, "grpc": {}}, "route": action}


def routes_for(
    mp: MethodPolicy, svc: Service, weights: Mapping[str, Mapping[str, int]], topo: Topology, *, retries: bool
) -> list[dict[str, Any]]:
    """The method's route by weight, preceded (for a blue/green service) by one route per color for
    calls that name their color in COLOR_HEADER. First match wins in Envoy."""
    pinned = []
    for color in svc.colors:
        r = route(mp, Target(cluster=f"{svc.name}-{color}"), topo, retries=retries, failover=svc.failover)
        r["name"] += f"@{color}"
        r["match"]["headers"] = [{"name": COLOR_HEADER, "string_match": {"exact": color}}]
        pinned.append(r)
    return [*pinned, route(mp, target_for(svc, weights), topo, retries=retries, failover=svc.failover)]


def route_config(name: str, routes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "@type": ROUTE_TYPE,
        "name": name,
        # Unknown paths get no route (404 -> UNIMPLEMENTED) instead of a catch-all.
        "virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}],
    }


def inbound_routes(topo: Topology, policy: ServicePolicy) -> dict[str, Any]:
    local = Target(cluster="local_app")
    return route_config("inbound", [route(mp, local, topo, retries=False) for mp in policy.all()])


def outbound_routes(
    topo: Topology, upstream: ServicePolicy, weights: Mapping[str, Mapping[str, int]]
) -> dict[str, Any]:
    svc = topo.services[upstream.service]
    return route_config(
        f"outbound_{upstream.service}",
        [r for mp in upstream.all() for r in routes_for(mp, svc, weights, topo, retries=True)],
    )


def gateway_routes(
    topo: Topology, policies: Mapping[str, ServicePolicy], weights: Mapping[str, Mapping[str, int]]
) -> dict[str, Any]:
    routed: list[tuple[MethodPolicy, Service]] = []
    for name in topo.gateway.upstreams:
        routed += [(mp, topo.services[name]) for mp in policies[name].methods.values()]
    refl = policies[topo.gateway.reflection_upstream]
    routed += [(mp, topo.services[refl.service]) for mp in refl.reflection]
    routes = [r for mp, svc in routed for r in routes_for(mp, svc, weights, topo, retries=True)]
    # Health names its service in the message: these routes go where mesh.gateway_health says.
    source = lua_source(topo, weights, COLOR_HEADER)
    routes += [health_route(route(mp, Target(cluster=refl.service), topo, retries=True), source) for mp in refl.health]
    return route_config("gateway", routes)


def discovery_file(resource: dict[str, Any]) -> dict[str, Any]:
    """A DiscoveryResponse for a file subscription; version_info changes only with content."""
    digest = hashlib.sha256(json.dumps(resource, sort_keys=True).encode()).hexdigest()[:16]
    return {"version_info": digest, "resources": [resource]}
