"""Policy: which tools a template may request, bounds on its limits, the HTTP allowlist and module
bounds. Loaded from a YAML file; each violation names the rule so a publisher knows what to change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from services.common.errors import InvalidArgument, PermissionDenied, quote
from services.templates.manifest import LIMIT_KEYS, Manifest, TemplateFile
from services.templates.wasm_structure import MalformedModule, ModuleBounds, read_structure

DEFAULT_POLICY_PATH = Path(__file__).with_name("default_policy.yaml")


class PolicyError(ValueError):
    """The policy file itself is malformed (a start-up error, not a request error)."""


@dataclass(frozen=True)
class FileBounds:
    """`files:` in the policy: how many read-only template files, how large, and under which guest
    directories (each one a read-only mount; never `/` or `/scratch`, which belong to the scratch grant)."""

    max_count: int = 64
    max_file_bytes: int = 16 * 1024 * 1024
    max_total_bytes: int = 64 * 1024 * 1024
    allowed_dirs: tuple[str, ...] = ("/data",)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FileBounds:
        dirs = tuple(data.get("allowed_dirs", cls.allowed_dirs))
        for directory in dirs:
            parts = directory.split("/")
            if (
                not directory.startswith("/")
                or directory.endswith("/")
                or any(p in ("", ".", "..") for p in parts[1:])
                or parts[1] == "scratch"
            ):
                raise PolicyError(
                    f"files.allowed_dirs entry {directory!r} must be an absolute directory, not / or /scratch"
                )
        nested = [a for a in dirs for b in dirs if a != b and a.startswith(b + "/")]
        if nested:
            raise PolicyError(f"files.allowed_dirs entry {nested[0]!r} lies inside another entry")
        return cls(
            max_count=int(data.get("max_count", cls.max_count)),
            max_file_bytes=int(data.get("max_file_bytes", cls.max_file_bytes)),
            max_total_bytes=int(data.get("max_total_bytes", cls.max_total_bytes)),
            allowed_dirs=dirs,
        )

    def mount_dir(self, path: str) -> str | None:
        """The allowed directory a file's guest path lies in, or None."""
        return next((d for d in self.allowed_dirs if path.startswith(d + "/")), None)

    def check(self, files: Mapping[str, TemplateFile]) -> None:
        """INVALID_ARGUMENT naming the `files.*` rule the file list breaks."""
        if len(files) > self.max_count:
            raise InvalidArgument(
                f"the template has {len(files)} files; the policy allows {self.max_count} (rule files.max_count)",
                field="files",
            )
        total = 0
        for path, entry in files.items():
            if self.mount_dir(path) is None:
                raise InvalidArgument(
                    f"files entry {quote(path)} is not under an allowed directory ({', '.join(self.allowed_dirs)}) "
                    "(rule files.allowed_dirs)",
                    field="files",
                )
            if entry.size > self.max_file_bytes:
                raise InvalidArgument(
                    f"files entry {quote(path)} is {entry.size} bytes; the policy allows {self.max_file_bytes} "
                    "(rule files.max_file_bytes)",
                    field="files",
                )
            total += entry.size
        if total > self.max_total_bytes:
            raise InvalidArgument(
                f"the template's files total {total} bytes; the policy allows {self.max_total_bytes} "
                "(rule files.max_total_bytes)",
                field="files",
            )


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
    file_bounds: FileBounds = field(default_factory=FileBounds)

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
                file_bounds=FileBounds.from_mapping(data.get("files") or {}),
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
        if manifest.files:
            self.file_bounds.check(manifest.files)

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
