"""The gRPC methods the mesh routes and authorises, read straight from ``protos/``.

The sidecars need exact method paths (RBAC) and each method's shape (streams get no
duration cap). Reading the ``.proto`` files keeps one source of truth and does not depend on
``make gen`` having run; the policy loader cross-checks every policy entry against this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mesh import REPO

PROTOS = REPO / "protos"

_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)\s*;", re.M)
_SERVICE = re.compile(r"^\s*service\s+(\w+)\s*\{(.*?)^\}", re.M | re.S)
_RPC = re.compile(r"rpc\s+(\w+)\s*\(\s*(stream\s+)?[\w.]+\s*\)\s*returns\s*\(\s*(stream\s+)?[\w.]+\s*\)")


@dataclass(frozen=True)
class Method:
    service: str  # short name: registry, signer, ...; "health"/"reflection" for the standard ones
    name: str  # PublishTemplate
    path: str  # /agentfactory.registry.v1.RegistryService/PublishTemplate
    client_streaming: bool
    server_streaming: bool

    @property
    def streaming(self) -> bool:
        return self.client_streaming or self.server_streaming


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


@cache
def contracts(protos: Path = PROTOS) -> dict[str, dict[str, Method]]:
    """service short name -> method name -> Method, for every ``agentfactory.<svc>.v1`` service."""
    out: dict[str, dict[str, Method]] = {}
    for proto in sorted(protos.rglob("*.proto")):
        text = _strip_comments(proto.read_text())
        pkg = _PACKAGE.search(text)
        if not pkg or not pkg.group(1).startswith("agentfactory."):
            continue
        short = pkg.group(1).split(".")[1]
        for svc in _SERVICE.finditer(text):
            full = f"{pkg.group(1)}.{svc.group(1)}"
            for rpc in _RPC.finditer(svc.group(2)):
                m = Method(short, rpc.group(1), f"/{full}/{rpc.group(1)}", bool(rpc.group(2)), bool(rpc.group(3)))
                out.setdefault(short, {})[m.name] = m
    return out


# Served by every service (grpc.health.v1 and server reflection), not part of our protos.
HEALTH = (
    Method("health", "Check", "/grpc.health.v1.Health/Check", False, False),
    Method("health", "Watch", "/grpc.health.v1.Health/Watch", False, True),
)
REFLECTION = (
    Method(
        "reflection",
        "ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        True,
        True,
    ),
    Method(
        "reflection", "ServerReflectionInfo", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", True, True
    ),
)
