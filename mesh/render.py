"""Render every Envoy config of a topology into ``build/mesh/``.

    python -m mesh.render [--topology mesh/topology.yaml] [--certs-dir build/certs]
                          [--out-dir build/mesh] [--validate]

Per Envoy (each sidecar, and the gateway) a directory ``<out>/<id>/`` with:

    envoy.yaml        bootstrap (listeners, clusters, admin) from one Jinja2 template
    rds/<name>.yaml   route configurations, loaded and *watched* by Envoy (file-based RDS)
    sds/workload.yaml the instance's certificate+key (file-based SDS, watched)
    sds/trust.yaml    the CA bundle (file-based SDS, watched)

Everything is written by atomic rename, so a running Envoy only ever sees whole files.
The current blue/green split is kept in ``<out>/weights.json`` and survives re-renders.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from mesh import DEFAULT_CERTS_DIR, DEFAULT_OUT_DIR, DEFAULT_TOPOLOGY, REPO
from mesh.ca import workload_dir
from mesh.policy import (
    GATEWAY_POLICY,
    POLICY_DIR,
    ServicePolicy,
    gateway_rbac,
    identity_pattern,
    load_gateway_policy,
    load_service_policy,
    sidecar_rbac,
)
from mesh.routes import discovery_file, gateway_routes, inbound_routes, outbound_routes
from mesh.topology import Instance, Topology, TopologyError, check_weights, load

TEMPLATE_DIRS = (Path(__file__).resolve().parent / "templates", REPO / "gateway")
WEIGHTS_FILE = "weights.json"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def write_atomic(path: Path, text: str) -> bool:
    """Replace ``path`` by rename (what Envoy's file watch reacts to); False if unchanged."""
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def dump(doc: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False, width=120)


@dataclass(frozen=True)
class Paths:
    """Where one Envoy's files live."""

    root: Path

    @property
    def bootstrap(self) -> Path:
        return self.root / "envoy.yaml"

    @property
    def rds_dir(self) -> Path:
        return self.root / "rds"

    @property
    def sds_dir(self) -> Path:
        return self.root / "sds"

    def rds(self, name: str) -> Path:
        return self.rds_dir / f"{name}.yaml"

    def sds(self) -> dict[str, str]:
        return {
            "dir": str(self.sds_dir),
            "workload": str(self.sds_dir / "workload.yaml"),
            "trust": str(self.sds_dir / "trust.yaml"),
        }


def envoy_paths(out_dir: Path, envoy_id: str) -> Paths:
    return Paths(out_dir.resolve() / envoy_id)


@dataclass(frozen=True)
class Layout:
    """Where one Envoy finds its files at run time (the paths written into its config).

    Locally everything is under ``build/``; in Kubernetes (``mesh.kubernetes``) the same files are
    ConfigMap and Secret volumes under /etc/envoy, and ``probe`` adds the kubelet's listener.
    """

    paths: Paths
    workload_dir: Path  # certificate + key, published by swapping a ``..data`` symlink
    trust_bundle: Path
    jwks: Path
    cert_file: str = "cert.pem"
    key_file: str = "key.pem"
    probe: Mapping[str, Any] | None = None


def local_layout(certs_dir: Path, out_dir: Path, envoy_id: str) -> Layout:
    certs = certs_dir.resolve()
    return Layout(
        paths=envoy_paths(out_dir, envoy_id),
        workload_dir=workload_dir(certs, envoy_id),
        trust_bundle=certs / "ca" / "bundle.pem",
        jwks=certs / "jwt" / "jwks.json",
    )


# --- weights state ------------------------------------------------------------------------------


def current_weights(topo: Topology, out_dir: Path) -> dict[str, dict[str, int]]:
    """The live split: weights.json if it fits this topology, else the topology's defaults."""
    weights = {svc: dict(split) for svc, split in topo.weights.items()}
    state = out_dir / WEIGHTS_FILE
    if state.exists():
        try:
            saved = json.loads(state.read_text())
            for svc, split in saved.items():
                if svc in weights:
                    check_weights(topo.services[svc], {k: int(v) for k, v in split.items()})
                    weights[svc] = {k: int(v) for k, v in split.items()}
        except (ValueError, TopologyError, AttributeError) as exc:
            print(f"ignoring {state} ({exc}); using the topology's weights", file=sys.stderr)
    return weights


def save_weights(out_dir: Path, weights: Mapping[str, Mapping[str, int]]) -> None:
    write_atomic(out_dir / WEIGHTS_FILE, json.dumps(weights, indent=2, sort_keys=True) + "\n")


# --- rendering ----------------------------------------------------------------------------------


def template_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in TEMPLATE_DIRS]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # YAML, not HTML; values go through |tojson
    )


def _cluster_specs(topo: Topology, upstreams: Sequence[str]) -> list[dict[str, Any]]:
    specs = []
    for up in upstreams:
        svc = topo.services[up]
        for name, instances in svc.clusters().items():
            fallbacks = svc.fallbacks(name)
            specs.append(
                {
                    "name": name,
                    "service": up,
                    "san": topo.spiffe_id(up),
                    # Envoy priorities: 0 = this cluster's own hosts, 1 = where it fails over to.
                    "priorities": [
                        [{"id": i.id, "host": i.host, "port": i.inbound} for i in group]
                        for group in (instances, fallbacks)
                        if group
                    ],
                    "dns": any(i.dns for i in (*instances, *fallbacks)),
                }
            )
    return specs


def sds_documents(layout: Layout) -> dict[Path, dict[str, Any]]:
    """The two file-based SDS resources of one Envoy: its certificate+key and the trust bundle."""
    wl = layout.workload_dir
    workload = {
        "@type": SECRET_TYPE,
        "name": "workload",
        "tls_certificate": {
            "certificate_chain": {"filename": str(wl / layout.cert_file)},
            "private_key": {"filename": str(wl / layout.key_file)},
            # mesh.ca swaps the ..data symlink in this directory: Envoy re-reads the pair together.
            "watched_directory": {"path": str(wl)},
        },
    }
    trust = {
        "@type": SECRET_TYPE,
        "name": "trust_bundle",
        "validation_context": {"trusted_ca": {"filename": str(layout.trust_bundle)}},
    }
    sds = layout.paths.sds()
    return {Path(sds["workload"]): discovery_file(workload), Path(sds["trust"]): discovery_file(trust)}


def _sds_files(layout: Layout) -> None:
    for path, doc in sds_documents(layout).items():
        write_atomic(path, dump(doc))


def load_policies(topo: Topology, policy_dir: Path = POLICY_DIR) -> dict[str, ServicePolicy]:
    return {svc: load_service_policy(svc, policy_dir) for svc in topo.services}


def route_files(
    topo: Topology, out_dir: Path, policies: Mapping[str, ServicePolicy], weights: Mapping[str, Mapping[str, int]]
) -> dict[Path, dict[str, Any]]:
    """Every RDS file of the mesh and its RouteConfiguration."""
    files: dict[Path, dict[str, Any]] = {}
    for inst in topo.instances():
        p = envoy_paths(out_dir, inst.id)
        files[p.rds("inbound")] = inbound_routes(topo, policies[inst.service])
        for up in topo.services[inst.service].upstreams:
            files[p.rds(f"outbound_{up}")] = outbound_routes(topo, policies[up], weights)
    gw = envoy_paths(out_dir, topo.gateway.id)
    files[gw.rds("gateway")] = gateway_routes(topo, policies, weights)
    return files


def write_routes(
    topo: Topology, out_dir: Path, weights: Mapping[str, Mapping[str, int]], policy_dir: Path = POLICY_DIR
) -> list[Path]:
    """(Re)write the RDS files; returns those whose content changed (Envoy reloads just those)."""
    policies = load_policies(topo, policy_dir)
    changed = []
    for path, cfg in route_files(topo, out_dir, policies, weights).items():
        if write_atomic(path, dump(discovery_file(cfg))):
            changed.append(path)
    return changed


def sidecar_config(
    env: jinja2.Environment, topo: Topology, inst: Instance, policies: Mapping[str, ServicePolicy], layout: Layout
) -> str:
    p = layout.paths
    svc = topo.services[inst.service]
    ctx = {
        "node_id": inst.id,
        "service": inst.service,
        "out_dir": str(p.root),
        "trust_domain": topo.trust_domain,
        "trust_prefix": f"spiffe://{topo.trust_domain}/sa/",
        "admin_port": inst.admin,
        "app_port": inst.app,
        "app_addr": inst.app_addr,
        "inbound": {"host": inst.listen_host, "port": inst.inbound, "rds_path": str(p.rds("inbound"))},
        "outbound": [
            {
                "name": f"outbound_{up}",
                "upstream": up,
                "port": inst.outbound[up],
                "rds_path": str(p.rds(f"outbound_{up}")),
            }
            for up in svc.upstreams
        ],
        "clusters": _cluster_specs(topo, svc.upstreams),
        "rbac_rules": sidecar_rbac(topo, policies[inst.service]),
        **_every_envoy(topo, layout),
    }
    return env.get_template("sidecar.yaml.j2").render(**ctx)


def _every_envoy(topo: Topology, layout: Layout) -> dict[str, Any]:
    """What the sidecar and gateway templates take alike: watched file locations, the topology-wide
    timeouts and resilience, telemetry (collector, access log mode, trace sampling), the probe."""
    p = layout.paths
    return {
        "rds_dir": str(p.rds_dir),
        "sds": p.sds(),
        "timeouts": topo.timeouts,
        "resilience": topo.resilience,
        "otlp": topo.otlp_endpoint,
        "access_log_errors_only": topo.access_log == "errors",
        "trace_sampling": topo.trace_sampling_percent,
        "probe": layout.probe,
        # A peer certificate must carry exactly one URI SAN, a whole id of this trust domain.
        "identity_pattern": identity_pattern(topo),
    }


def gateway_config(env: jinja2.Environment, topo: Topology, layout: Layout, gateway_policy: Path) -> str:
    gw = topo.gateway
    p = layout.paths
    upstreams = list(dict.fromkeys([*gw.upstreams, gw.reflection_upstream]))
    ctx = {
        "node_id": gw.id,
        "out_dir": str(p.root),
        "trust_domain": topo.trust_domain,
        "trust_prefix": f"spiffe://{topo.trust_domain}/",
        "admin_port": gw.admin,
        "listen": {"host": gw.host, "port": gw.port},
        "rds_path": str(p.rds("gateway")),
        "jwt": {
            "issuer": gw.jwt_issuer,
            "audience": gw.jwt_audience,
            "jwks": str(layout.jwks),
        },
        "clusters": _cluster_specs(topo, upstreams),
        "rbac_rules": gateway_rbac(topo, load_gateway_policy(topo, gateway_policy)),
        **_every_envoy(topo, layout),
    }
    return env.get_template("envoy.yaml.j2").render(**ctx)


def render(
    topo: Topology,
    *,
    certs_dir: Path = DEFAULT_CERTS_DIR,
    out_dir: Path = DEFAULT_OUT_DIR,
    policy_dir: Path = POLICY_DIR,
    gateway_policy: Path = GATEWAY_POLICY,
) -> dict[str, Path]:
    """Render every Envoy of ``topo``; returns envoy id -> bootstrap path."""
    env = template_env()
    policies = load_policies(topo, policy_dir)
    weights = current_weights(topo, out_dir)
    out: dict[str, Path] = {}
    for inst in topo.instances():
        layout = local_layout(certs_dir, out_dir, inst.id)
        _sds_files(layout)
        write_atomic(layout.paths.bootstrap, sidecar_config(env, topo, inst, policies, layout))
        out[inst.id] = layout.paths.bootstrap
    layout = local_layout(certs_dir, out_dir, topo.gateway.id)
    _sds_files(layout)
    write_atomic(layout.paths.bootstrap, gateway_config(env, topo, layout, gateway_policy))
    out[topo.gateway.id] = layout.paths.bootstrap
    # Routes last: each bootstrap above already names them, and the files must exist at start.
    write_routes(topo, out_dir, weights, policy_dir)
    save_weights(out_dir, weights)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--certs-dir", type=Path, default=DEFAULT_CERTS_DIR)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--validate", action="store_true", help="run `envoy --mode validate` on every config")
    args = parser.parse_args(argv)
    topo = load(args.topology)
    if not (args.certs_dir / "ca" / "bundle.pem").exists():
        print(f"no CA under {args.certs_dir}: run `make certs` (python -m mesh.ca issue) first", file=sys.stderr)
        return 2
    configs = render(topo, certs_dir=args.certs_dir, out_dir=args.out_dir)
    print(f"rendered {len(configs)} Envoy configs into {args.out_dir}")
    if args.validate:
        from mesh.envoy import validate_all

        failures = validate_all(list(configs.values()))
        for path, err in failures.items():
            print(f"INVALID {path}:\n{err}", file=sys.stderr)
        if failures:
            return 1
        print(f"all {len(configs)} configs pass `envoy --mode validate`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
