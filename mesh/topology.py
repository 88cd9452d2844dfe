"""The topology model: the processes of one mesh, their ports and who calls whom.

Loaded from YAML (``mesh/topology.yaml`` for a local run; tests build their own with free
ports) and checked once, so the renderers can trust it: ports are unique, admin and app
ports are loopback-only, every upstream a service names exists and has an outbound port.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

WORKLOADS = ("registry", "signer", "executor", "scheduler", "gateway")
ROLES = ("admin", "publisher", "operator", "viewer")
LOOPBACK = "127.0.0.1"


class TopologyError(ValueError):
    """The topology file is inconsistent; the message names the offending entry."""


@dataclass(frozen=True)
class Instance:
    """One service process and its sidecar."""

    id: str
    service: str
    color: str | None
    app: int
    inbound: int
    metrics: int
    admin: int
    outbound: Mapping[str, int]
    host: str = LOOPBACK  # what callers dial: an IP, or a DNS name (Kubernetes Services)
    bind: str | None = None  # the inbound listener's IP when ``host`` is a name (e.g. 0.0.0.0)

    @property
    def app_addr(self) -> str:
        return f"{LOOPBACK}:{self.app}"

    @property
    def inbound_addr(self) -> str:
        return f"{self.host}:{self.inbound}"

    @property
    def listen_host(self) -> str:
        """The address the inbound listener binds (Envoy listeners need a literal IP)."""
        return self.bind or self.host

    @property
    def dns(self) -> bool:
        """Callers resolve ``host`` by DNS (STRICT_DNS clusters) instead of using it as is."""
        return not _is_ip(self.host)


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    upstreams: tuple[str, ...]
    instances: tuple[Instance, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # extra settings for every instance
    # Stateless and split blue/green: a color's cluster keeps the other colors' instances as a
    # lower-priority fallback, so a color that is ejected or unhealthy sheds its traffic to them.
    failover: bool = False

    @property
    def colors(self) -> tuple[str, ...]:
        """Colors in first-seen order; empty when the service is not split blue/green."""
        seen: list[str] = []
        for inst in self.instances:
            if inst.color and inst.color not in seen:
                seen.append(inst.color)
        return tuple(seen)

    def clusters(self) -> dict[str, tuple[Instance, ...]]:
        """Envoy cluster name -> its endpoints, as every caller of this service sees them."""
        if not self.colors:
            return {self.name: self.instances}
        return {f"{self.name}-{color}": tuple(i for i in self.instances if i.color == color) for color in self.colors}

    def fallbacks(self, cluster: str) -> tuple[Instance, ...]:
        """The instances a cluster falls back to (Envoy priority 1) when its own are all out: the
        other colors' for a ``failover`` service, none otherwise."""
        if not self.failover or not self.colors:
            return ()
        return tuple(i for i in self.instances if f"{self.name}-{i.color}" != cluster)


@dataclass(frozen=True)
class Gateway:
    id: str
    host: str
    port: int
    admin: int
    upstreams: tuple[str, ...]
    reflection_upstream: str
    jwt_issuer: str
    jwt_audience: str

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Client:
    name: str
    role: str


@dataclass(frozen=True)
class Database:
    """The local PostgreSQL a mesh may run (`make run BACKEND=postgres`): where it listens, and the
    services that keep their state there, each with its own role and database."""

    port: int
    services: tuple[str, ...]


DATABASE_SERVICES = ("registry", "scheduler")  # the services with a PostgreSQL adapter


@dataclass(frozen=True)
class Topology:
    trust_domain: str
    services: Mapping[str, Service]
    gateway: Gateway
    clients: tuple[Client, ...]
    weights: Mapping[str, Mapping[str, int]]
    timeouts: Mapping[str, str]
    resilience: Mapping[str, Any]
    envoy: Mapping[str, Any]
    source: Path | None = field(default=None, compare=False)
    # Where every Envoy and service exports OTLP/gRPC traces, "host:port" ("" = tracing off).
    otlp_endpoint: str = ""
    # Which requests every Envoy logs: "errors" (a non-OK gRPC status, an HTTP error or an Envoy
    # response flag) or "all". Each logged request costs its Envoy a JSON line and supervisord a copy.
    access_log: str = "errors"
    # Percent of requests the gateway and the outbound listeners start a trace for (inbound listeners
    # and services follow their caller's decision). A traced request costs about twice the CPU.
    trace_sampling_percent: float = 100.0
    # Present when the topology names a local database; a mesh runs it only when asked to (the default
    # `make run` stays on the embedded SQLite stores).
    database: Database | None = None

    def instances(self) -> list[Instance]:
        return [inst for svc in self.services.values() for inst in svc.instances]

    def instance(self, instance_id: str) -> Instance:
        for inst in self.instances():
            if inst.id == instance_id:
                return inst
        raise KeyError(instance_id)

    def envoy_ids(self) -> list[str]:
        """Every Envoy process: one sidecar per instance, plus the gateway."""
        return [inst.id for inst in self.instances()] + [self.gateway.id]

    def spiffe_id(self, workload: str) -> str:
        return f"spiffe://{self.trust_domain}/sa/{workload}"

    def role_prefix(self, role: str) -> str:
        """URI SAN prefix shared by every client certificate of one role."""
        return f"spiffe://{self.trust_domain}/role/{role}/"

    def client_spiffe_id(self, role: str, name: str) -> str:
        return f"{self.role_prefix(role)}user/{name}"

    def split_services(self) -> list[str]:
        return [name for name, svc in self.services.items() if svc.colors]


def load(source: Path | Mapping[str, Any]) -> Topology:
    """Load and check a topology from a YAML file or an already-parsed mapping."""
    path: Path | None = None
    if isinstance(source, Path):
        path = source
        raw = yaml.safe_load(source.read_text())
    else:
        raw = source
    try:
        topo = _build(raw, path)
    except (KeyError, TypeError) as exc:
        raise TopologyError(f"malformed topology ({type(exc).__name__}: {exc})") from exc
    _check(topo)
    return topo


def _build(raw: Mapping[str, Any], path: Path | None) -> Topology:
    services: dict[str, Service] = {}
    for name, spec in raw["services"].items():
        instances = tuple(
            Instance(
                id=str(i["id"]),
                service=name,
                color=i.get("color"),
                app=int(i["ports"]["app"]),
                inbound=int(i["ports"]["inbound"]),
                metrics=int(i["ports"]["metrics"]),
                admin=int(i["ports"]["admin"]),
                outbound={str(k): int(v) for k, v in (i.get("outbound") or {}).items()},
                host=str(i.get("host", LOOPBACK)),
                bind=str(i["bind"]) if i.get("bind") is not None else None,
            )
            for i in spec["instances"]
        )
        services[name] = Service(
            name=name,
            module=str(spec.get("module", f"services.{name}")),
            upstreams=tuple(spec.get("upstreams") or ()),
            instances=instances,
            env={str(k): str(v) for k, v in (spec.get("env") or {}).items()},
            failover=bool(spec.get("failover", False)),
        )
    gw = raw["gateway"]
    gateway = Gateway(
        id=str(gw.get("id", "gateway")),
        host=str(gw["listen"]["host"]),
        port=int(gw["listen"]["port"]),
        admin=int(gw["admin"]),
        upstreams=tuple(gw["upstreams"]),
        reflection_upstream=str(gw.get("reflection_upstream", "scheduler")),
        jwt_issuer=str(gw["jwt"]["issuer"]),
        jwt_audience=str(gw["jwt"]["audience"]),
    )
    clients = tuple(Client(name=str(c["name"]), role=str(c["role"])) for c in raw.get("clients") or ())
    weights = {svc: {str(c): int(w) for c, w in split.items()} for svc, split in (raw.get("weights") or {}).items()}
    return Topology(
        trust_domain=str(raw["trust_domain"]),
        services=services,
        gateway=gateway,
        clients=clients,
        weights=weights,
        timeouts={k: str(v) for k, v in raw["timeouts"].items()},
        resilience=dict(raw["resilience"]),
        envoy=dict(raw.get("envoy") or {}),
        source=path,
        otlp_endpoint=str((raw.get("telemetry") or {}).get("otlp") or ""),
        access_log=str((raw.get("telemetry") or {}).get("access_log") or "errors"),
        trace_sampling_percent=_percent((raw.get("telemetry") or {}).get("sampling_percent", 100)),
        database=_database(raw.get("database")),
    )


def _database(raw: Mapping[str, Any] | None) -> Database | None:
    if raw is None:
        return None
    return Database(port=int(raw["port"]), services=tuple(str(s) for s in raw["services"]))


def _percent(value: object) -> float:
    try:
        percent = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TopologyError(f"telemetry.sampling_percent: {value!r} is not a number") from None
    if not 0 <= percent <= 100:
        raise TopologyError(f"telemetry.sampling_percent: {percent:g} is not between 0 and 100")
    return percent


ACCESS_LOG_MODES = ("errors", "all")
_DURATION = re.compile(r"\A[0-9]+(\.[0-9]+)?s\Z")
DURATION_KEYS = ("connect", "stream_idle", "long_lived_idle", "unary_max", "grpc_timeout_max", "drain")


def _check(topo: Topology) -> None:
    for key in DURATION_KEYS:
        value = topo.timeouts.get(key)
        if value is None or not _DURATION.fullmatch(value):
            raise TopologyError(f"timeouts.{key}: {value!r} is not an Envoy duration like '30s' or '1.5s'")
    for key, value in topo.resilience.items():
        if key.endswith(("_interval", "_timeout", "_time")) and not _DURATION.fullmatch(str(value)):
            raise TopologyError(f"resilience.{key}: {value!r} is not an Envoy duration like '5s'")
    for name in topo.services:
        if name not in WORKLOADS or name == "gateway":
            raise TopologyError(f"unknown service {name!r}; expected one of {WORKLOADS[:-1]}")
    ports: dict[int, str] = {}

    def claim(port: int, what: str) -> None:
        if not 0 < port < 65536:
            raise TopologyError(f"{what}: port {port} out of range")
        if port in ports:
            raise TopologyError(f"{what}: port {port} already used by {ports[port]}")
        ports[port] = what

    ids: set[str] = set()
    for svc in topo.services.values():
        if not svc.instances:
            raise TopologyError(f"service {svc.name} has no instances")
        colored = [i.color is not None for i in svc.instances]
        if any(colored) and not all(colored):
            raise TopologyError(f"service {svc.name}: either every instance has a color or none does")
        if svc.failover and len(svc.colors) < 2:
            raise TopologyError(f"service {svc.name}: failover needs at least two colors to fall back between")
        for up in svc.upstreams:
            if up not in topo.services:
                raise TopologyError(f"service {svc.name} calls unknown upstream {up!r}")
        for inst in svc.instances:
            if inst.id in ids or inst.id == topo.gateway.id:
                raise TopologyError(f"duplicate instance id {inst.id!r}")
            ids.add(inst.id)
            _require_host(inst, f"{inst.id}.host")
            claim(inst.app, f"{inst.id}.app")
            claim(inst.inbound, f"{inst.id}.inbound")
            claim(inst.metrics, f"{inst.id}.metrics")
            claim(inst.admin, f"{inst.id}.admin")
            if set(inst.outbound) != set(svc.upstreams):
                raise TopologyError(
                    f"{inst.id}: outbound ports {sorted(inst.outbound)} must match upstreams {sorted(svc.upstreams)}"
                )
            for up, port in inst.outbound.items():
                claim(port, f"{inst.id}.outbound.{up}")
    if topo.database is not None:
        claim(topo.database.port, "database.port")
        # A service the topology leaves out (a test's or a benchmark's smaller mesh) has nothing to point at.
        for name in topo.database.services:
            if name not in DATABASE_SERVICES:
                raise TopologyError(f"database.services: {name!r} has no PostgreSQL store ({DATABASE_SERVICES})")
    gw = topo.gateway
    _require_ip(gw.host, "gateway.listen.host")
    claim(gw.port, "gateway.listen")
    claim(gw.admin, "gateway.admin")
    for up in (*gw.upstreams, gw.reflection_upstream):
        if up not in topo.services:
            raise TopologyError(f"gateway routes to unknown service {up!r}")
    for svc_name, split in topo.weights.items():
        svc = topo.services.get(svc_name)
        if svc is None or not svc.colors:
            raise TopologyError(f"weights given for {svc_name!r}, which is not split blue/green")
        check_weights(svc, split)
    for svc in topo.services.values():
        if svc.colors and svc.name not in topo.weights:
            raise TopologyError(f"service {svc.name} is split by color but has no weights")
    if topo.otlp_endpoint:
        host, _, port = topo.otlp_endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise TopologyError(f"telemetry.otlp: {topo.otlp_endpoint!r} is not host:port (an OTLP/gRPC collector)")
    if topo.access_log not in ACCESS_LOG_MODES:
        raise TopologyError(f"telemetry.access_log: {topo.access_log!r}; expected one of {ACCESS_LOG_MODES}")
    for client in topo.clients:
        if client.role not in ROLES:
            raise TopologyError(f"client {client.name}: unknown role {client.role!r}; expected one of {ROLES}")


def check_weights(svc: Service, split: Mapping[str, int]) -> None:
    """A split must name exactly the service's colors, be non-negative and total 100."""
    if set(split) != set(svc.colors):
        raise TopologyError(f"{svc.name}: weights must name exactly {list(svc.colors)}, got {sorted(split)}")
    if any(w < 0 for w in split.values()) or sum(split.values()) != 100:
        raise TopologyError(f"{svc.name}: weights must be >= 0 and total 100, got {dict(split)}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _require_ip(host: str, what: str) -> None:
    # Envoy listeners and STATIC clusters need literal addresses.
    if not _is_ip(host):
        raise TopologyError(f"{what}: {host!r} is not an IP address")


# RFC 1123 labels; "_" is allowed too (legal in DNS, and the Helm render uses __PLACEHOLDER__ labels).
_DNS_LABEL = re.compile(r"\A[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")


def _require_host(inst: Instance, what: str) -> None:
    """An instance is dialled at an IP, or at a DNS name (Kubernetes) if it says where to bind."""
    if inst.bind is not None:
        _require_ip(inst.bind, f"{inst.id}.bind")
    if _is_ip(inst.host):
        return
    if inst.bind is None:
        raise TopologyError(f"{what}: {inst.host!r} is not an IP address (a DNS name needs `bind`, the listener's IP)")
    labels = inst.host.rstrip(".").split(".")
    if len(inst.host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise TopologyError(f"{what}: {inst.host!r} is neither an IP address nor a DNS name")
