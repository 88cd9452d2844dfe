"""gRPC health checks through the gateway, answered by the service they name.

``grpc.health.v1.Health/Check`` (and ``Watch``) carry the service name in the request message, not in
the path, so path routing alone sent every health call to one service. The gateway's health routes
run a small Lua script (the only routes that enable the Lua filter: every other call, RunAgent
included, never runs it) that reads the name from the message and names the cluster in a header the
route action follows (``cluster_header``). A blue/green service's cluster is picked like its traffic:
the color in ``x-agentfactory-color`` if the client named one, else by the current weights (the
script is part of the route configuration, which ``mesh.weights`` rewrites on every shift).
Names the platform does not know go to the reflection upstream, which answers NOT_FOUND.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mesh.methods import contracts
from mesh.topology import Topology

CLUSTER_HEADER = "x-agentfactory-health-cluster"
FILTER = "envoy.filters.http.lua"
FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
LUA_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute"

# The request is one small gRPC message: a 5-byte frame header, then field 1 (tag 0x0A), its length as
# a varint and the name. Names longer than 127 bytes (a two-byte varint) are not service names of ours.
_LUA = """
local services = %(services)s
local default = %(default)s
local color_header = %(color_header)s

local function pick(entry, headers)
  if entry.cluster then return entry.cluster end
  local asked = headers:get(color_header)
  if asked and entry.colors[asked] then return entry.colors[asked] end
  local total = 0
  for _, w in ipairs(entry.weights) do total = total + w[2] end
  if total <= 0 then return entry.weights[1][1] end
  local r = math.random() * total
  for _, w in ipairs(entry.weights) do
    r = r - w[2]
    if r < 0 then return w[1] end
  end
  return entry.weights[#entry.weights][1]
end

function envoy_on_request(handle)
  local name = ""
  local body = handle:body()
  if body and body:length() >= 7 then
    local bytes = body:getBytes(0, math.min(body:length(), 140))
    local len = bytes:byte(7)
    if bytes:byte(6) == 10 and len < 128 and #bytes >= 7 + len then
      name = bytes:sub(8, 7 + len)
    end
  end
  local entry = services[name]
  local headers = handle:headers()
  headers:replace("%(header)s", entry and pick(entry, headers) or pick(default, headers))
end
"""


def _lua_table(value: object) -> str:
    """A Lua literal for plain data (strings, numbers, lists, string-keyed maps)."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {_lua_table(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "{" + ", ".join(_lua_table(v) for v in value) + "}"
    return json.dumps(value)


def _entry(topo: Topology, service: str, weights: Mapping[str, Mapping[str, int]]) -> dict[str, object]:
    svc = topo.services[service]
    if not svc.colors:
        return {"cluster": svc.name}
    split = weights[svc.name]
    return {
        "colors": {c: f"{svc.name}-{c}" for c in svc.colors},
        "weights": [[f"{svc.name}-{c}", int(split[c])] for c in svc.colors],
    }


def lua_source(topo: Topology, weights: Mapping[str, Mapping[str, int]], color_header: str) -> str:
    """The script for the gateway's health routes: full service name -> the cluster that answers."""
    services: dict[str, dict[str, object]] = {}
    for short in topo.gateway.upstreams:
        for method in contracts()[short].values():
            full = method.path.split("/")[1]
            services[full] = _entry(topo, short, weights)
    default = _entry(topo, topo.gateway.reflection_upstream, weights)
    return _LUA % {
        "services": _lua_table(services),
        "default": _lua_table(default),
        "color_header": json.dumps(color_header),
        "header": CLUSTER_HEADER,
    }


def health_route(route: dict[str, object], source: str) -> dict[str, object]:
    """``route`` (a health method's route) sent to the cluster the script names, with the script on."""
    action = dict(route["route"])  # type: ignore[arg-type]
    for key in ("cluster", "weighted_clusters"):
        action.pop(key, None)
    action["cluster_header"] = CLUSTER_HEADER
    return {
        **route,
        "route": action,
        "typed_per_filter_config": {
            FILTER: {
                "@type": FILTER_CONFIG,
                "config": {"@type": LUA_PER_ROUTE, "source_code": {"inline_string": source}},
            }
        },
    }
