"""Policy: which tools a template may request, bounds on its limits, the HTTP allowlist and module
bounds. Loaded from a YAML file; each violation names the rule so a publisher knows what to change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from services.common.errors import InvalidArgument, PermissionDenied
from services.spec.manifest import LIMIT_KEYS, Manifest
from services.spec.wasm_structure import MalformedModule, ModuleBounds, read_structure

DEFAULT_POLICY_PATH = Path(__file__).with_name("default_policy.yaml")


class PolicyError(ValueError):
    """The policy file itself is malformed (a start-up error, not a request error)."""


@dataclass(frozen=True)
class Policy:
    known_tools: frozenset[str]
    denied_tools: Mapping[str, str]
    limit_bounds: Mapping[str, tuple[int, int]]
    default_limits: Mapping[str, int]
    http_allowlist: frozenset[str]
    max_module_bytes: int
    max_module_imports: int
    module_bounds: ModuleBounds = field(default_factory=ModuleBounds)  # all of `module:`, bytes and imports too

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Policy:
        try:
            bounds = {k: (int(v.get("min", 1)), int(v["max"])) for k, v in data["limits"].items()}
            defaults = {k: int(v) for k, v in data["default_limits"].items()}
            missing = [k for k in LIMIT_KEYS if k not in bounds or k not in defaults]
            if missing:
                raise PolicyError(f"policy lacks limits/default_limits for {missing}")
            module = data.get("module", {})
            return cls(
                known_tools=frozenset(data["known_tools"]),
                denied_tools=dict(data.get("denied_tools") or {}),
                limit_bounds=bounds,
                default_limits=defaults,
                http_allowlist=frozenset(data.get("http_allowlist") or ()),
                max_module_bytes=int(module.get("max_bytes", 8 * 1024 * 1024)),
                max_module_imports=int(module.get("max_imports", 64)),
                module_bounds=ModuleBounds.from_mapping(module),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, PolicyError):
                raise
            raise PolicyError(f"malformed policy: {exc!r}") from exc

    @classmethod
    def load(cls, path: Path | None = None) -> Policy:
        path = path or DEFAULT_POLICY_PATH
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"cannot read policy {path}: {exc}") from exc
        return cls.from_mapping(data)

    def check_tools(self, tools: tuple[str, ...] | list[str]) -> None:
        for i, tool in enumerate(tools):
            if tool in self.denied_tools:
                raise PermissionDenied(
                    f"tool {tool!r} is denied by policy rule denied_tools.{tool}: {self.denied_tools[tool]}",
                    rule=f"denied_tools.{tool}",
                )
            if tool not in self.known_tools:
                raise InvalidArgument(
                    f"tools[{i}] {tool!r} is not a known tool; known: {', '.join(sorted(self.known_tools))}",
                    field=f"tools[{i}]",
                )

    def check(self, manifest: Manifest) -> None:
        """Raise PermissionDenied/InvalidArgument naming the first rule the manifest breaks."""
        self.check_tools(manifest.tools)
        for key in LIMIT_KEYS:
            low, high = self.limit_bounds[key]
            value = getattr(manifest.limits, key)
            if value < low:
                raise PermissionDenied(
                    f"limits.{key}={value} is below the policy minimum {low} (rule limits.{key}.min)",
                    rule=f"limits.{key}.min",
                )
            if value > high:
                raise PermissionDenied(
                    f"limits.{key}={value} exceeds the policy maximum {high} (rule limits.{key}.max)",
                    rule=f"limits.{key}.max",
                )
        for host in manifest.http_hosts:
            if host not in self.http_allowlist:
                raise PermissionDenied(
                    f"http_hosts entry {host!r} is not in the policy's http_allowlist (rule http_allowlist)",
                    rule="http_allowlist",
                )
        if manifest.http_hosts and "http_get" not in manifest.tools:
            raise InvalidArgument("http_hosts is set but the http_get tool is not requested", field="http_hosts")

    def module_violation(self, wasm: bytes) -> str | None:
        """The first `module.*` bound the binary breaks (a message naming the rule), or None. Reads only
        section headers and counts (wasm_structure.py): cheap enough for every publish and compile."""
        try:
            return self.module_bounds.violation(read_structure(wasm))
        except MalformedModule as exc:
            return f"{exc} (rule module.well_formed)"

    def allows_http(self, manifest: Manifest, host_port: str) -> bool:
        """Call-time check for the http_get tool: the host must be in both the manifest and the policy."""
        return host_port in manifest.http_hosts and host_port in self.http_allowlist
