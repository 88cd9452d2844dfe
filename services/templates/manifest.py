"""The template manifest: strict parsing of what a publisher sends, inheritance, and the resolved model.

A *draft* is the publisher's JSON, validated field by field (unknown keys are errors). *Resolving* a
draft applies its parent (child fields override; `limits`, `env` and `labels` merge key by key) and
the policy's default limits. The resolved `Manifest` is what gets signed (see canonical.py) and run.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, quote
from services.templates.canonical import canonical_json
from services.templates.semver import Version

MAX_MANIFEST_BYTES = 64 * 1024
MAX_INHERITANCE_DEPTH = 8

NAME_RE = re.compile(r"\A[a-z][a-z0-9-]{0,62}\Z")
SHA256_RE = re.compile(r"\A[0-9a-f]{64}\Z")
HOST_PORT_RE = re.compile(r"\A[A-Za-z0-9.-]{1,253}:[0-9]{1,5}\Z")
# A template file's guest path: absolute, at least two components (a file sits in a mounted directory),
# each of letters, digits, '.', '_' and '-' and never '.' or '..' (checked apart), no trailing slash.
FILE_PATH_RE = re.compile(r"\A(?:/[A-Za-z0-9._-]{1,128}){2,16}\Z")
MAX_FILE_PATH_CHARS = 256
MAX_FILES_PARSED = 256  # a syntax bound only; the policy's files.max_count is the real one
LIMIT_KEYS = ("fuel", "memory_bytes", "timeout_ms", "max_output_bytes", "max_tool_calls")
_MAX_INT = 2**63 - 1

_FIELDS = {
    "name", "version", "extends", "description", "role", "tools", "limits", "env", "args", "labels",
    "module_sha256", "input_schema", "output_schema", "http_hosts", "retryable", "files",
}  # fmt: skip


@dataclass(frozen=True)
class Limits:
    fuel: int
    memory_bytes: int
    timeout_ms: int
    max_output_bytes: int
    max_tool_calls: int

    def to_dict(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in LIMIT_KEYS}


@dataclass(frozen=True)
class TemplateFile:
    """A read-only file shipped with a template: its content's digest and size (signed with the manifest)."""

    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Manifest:
    """A resolved manifest. Immutable; `to_dict()` is the signed content."""

    name: str
    version: str
    limits: Limits
    module_sha256: str
    extends: str = ""
    description: str = ""
    role: str = ""
    tools: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    input_schema: Mapping[str, Any] = field(default_factory=dict)
    output_schema: Mapping[str, Any] = field(default_factory=dict)
    http_hosts: tuple[str, ...] = ()
    retryable: bool = False
    files: Mapping[str, TemplateFile] = field(default_factory=dict)  # guest path -> file

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "extends": self.extends,
            "description": self.description,
            "role": self.role,
            "tools": list(self.tools),
            "limits": self.limits.to_dict(),
            "env": dict(self.env),
            "args": list(self.args),
            "labels": dict(self.labels),
            "module_sha256": self.module_sha256,
            "input_schema": dict(self.input_schema),
            "output_schema": dict(self.output_schema),
            "http_hosts": list(self.http_hosts),
            "retryable": self.retryable,
            # Only when there are files: a template without them keeps the canonical bytes (and so the
            # signature) it had before files existed.
            **({"files": {path: f.to_dict() for path, f in self.files.items()}} if self.files else {}),
        }

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_dict())


def parse_ref(ref: str, field_name: str = "extends") -> tuple[str, str]:
    """Split 'name@version', validating both halves."""
    name, sep, version = ref.partition("@")
    if not sep or not NAME_RE.fullmatch(name):
        raise InvalidArgument(f"{field_name} {quote(ref)} must look like 'name@1.2.3'", field=field_name)
    Version(version)
    return name, version


# --- draft parsing --------------------------------------------------------------------------------


def _reject_constant(token: str) -> Any:
    raise InvalidArgument(f"manifest JSON contains {token}, which is not valid JSON", field="manifest_json")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidArgument(f"manifest JSON repeats the key {quote(key)}", field=key)
        result[key] = value
    return result


def load_json(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidArgument("manifest_json is empty", field="manifest_json")
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidArgument(
            f"manifest_json is {len(raw)} bytes; the limit is {MAX_MANIFEST_BYTES}", field="manifest_json"
        )
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"manifest_json is not UTF-8: {exc.reason}", field="manifest_json") from exc
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"manifest_json is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            field="manifest_json",
        ) from exc
    except RecursionError as exc:
        raise InvalidArgument("manifest_json nests too deeply", field="manifest_json") from exc
    if not isinstance(value, dict):
        raise InvalidArgument("manifest_json must be a JSON object", field="manifest_json")
    return value


def _str(value: Any, name: str, max_len: int = 1024) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string", field=name)
    if len(value) > max_len:
        raise InvalidArgument(f"{name} is longer than {max_len} characters", field=name)
    return value


def _str_list(value: Any, name: str, max_items: int = 64) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidArgument(f"{name} must be a list of strings", field=name)
    if len(value) > max_items:
        raise InvalidArgument(f"{name} has {len(value)} items; at most {max_items}", field=name)
    return tuple(_str(item, f"{name}[{i}]", 4096) for i, item in enumerate(value))


def _str_map(value: Any, name: str, max_items: int = 64) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be an object of strings", field=name)
    if len(value) > max_items:
        raise InvalidArgument(f"{name} has {len(value)} entries; at most {max_items}", field=name)
    return {_str(k, f"{name} key", 256): _str(v, f"{name}.{k}", 4096) for k, v in value.items()}


def _env(value: Any) -> dict[str, str]:
    """`env` as a WASI environment: NUL-terminated `KEY=value` strings, so a key must be non-empty and hold
    no `=` (the guest's getenv would split it elsewhere) and nothing may hold a NUL (it would cut the entry)."""
    env = _str_map(value, "env")
    for key, val in env.items():
        if not key:
            raise InvalidArgument("env has an empty key", field="env")
        if "=" in key or "\0" in key:
            raise InvalidArgument(f"env key {quote(key)} contains '=' or a NUL character", field="env")
        if "\0" in val:
            raise InvalidArgument(f"env.{quote(key)} contains a NUL character", field="env")
    return env


def _args(value: Any) -> tuple[str, ...]:
    args = _str_list(value, "args")
    for i, arg in enumerate(args):
        if "\0" in arg:
            raise InvalidArgument(f"args[{i}] contains a NUL character", field="args")
    return args


def check_file_path(path: str, name: str) -> None:
    """Syntax of a template file's guest path (the policy decides which directories may hold files)."""
    if len(path) > MAX_FILE_PATH_CHARS or not FILE_PATH_RE.fullmatch(path):
        raise InvalidArgument(
            f"{name} {quote(path)} must be an absolute path of 2 to 16 components of letters, digits, '.', '_' "
            f"and '-', at most {MAX_FILE_PATH_CHARS} characters",
            field=name,
        )
    if any(part in (".", "..") for part in path.split("/")):
        raise InvalidArgument(f"{name} {quote(path)} has a '.' or '..' component", field=name)


def _files(value: Any) -> dict[str, TemplateFile]:
    if not isinstance(value, dict):
        raise InvalidArgument("files must be an object of guest path -> {sha256, size}", field="files")
    if len(value) > MAX_FILES_PARSED:
        raise InvalidArgument(f"files has {len(value)} entries; at most {MAX_FILES_PARSED}", field="files")
    out: dict[str, TemplateFile] = {}
    for path, entry in value.items():
        check_file_path(path, "files key")
        name = f"files.{path}"
        if not isinstance(entry, dict) or set(entry) != {"sha256", "size"}:
            raise InvalidArgument(f"{name} must be an object with exactly sha256 and size", field=name)
        digest = _str(entry["sha256"], f"{name}.sha256", 64)
        if not SHA256_RE.fullmatch(digest):
            raise InvalidArgument(f"{name}.sha256 must be 64 lower-case hex digits", field=name)
        size = entry["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size > _MAX_INT:
            raise InvalidArgument(f"{name}.size must be a whole number >= 0", field=name)
        out[path] = TemplateFile(digest, size)
    return out


def check_file_tree(paths: Iterable[str]) -> None:
    """No path may be both a file and a directory of another file (the mount could not hold both)."""
    ordered = sorted(paths)
    for shorter, longer in itertools.pairwise(ordered):
        if longer.startswith(shorter + "/"):
            raise InvalidArgument(
                f"files: {quote(shorter)} is a file and a directory of {quote(longer)}", field="files"
            )


def _limit(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be a whole number", field=name)
    if value <= 0 or value > _MAX_INT:
        raise InvalidArgument(f"{name} must be positive and below 2^63", field=name)
    return value


@dataclass(frozen=True)
class Draft:
    """A validated, unresolved manifest: only the fields the publisher set."""

    values: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.values["name"])

    @property
    def version(self) -> str:
        return str(self.values["version"])

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def parse_draft(raw: bytes) -> Draft:
    data = load_json(raw)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise InvalidArgument(
            f"unknown manifest field {quote(unknown[0])}; known fields: {', '.join(sorted(_FIELDS))}", field=unknown[0]
        )
    for required in ("name", "version"):
        if required not in data:
            raise InvalidArgument(f"manifest field {required!r} is required", field=required)
    out: dict[str, Any] = {}
    name = _str(data["name"], "name", 63)
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"name {quote(name)} must start with a letter and use lower-case letters, digits and dashes", field="name"
        )
    out["name"] = name
    out["version"] = str(Version(_str(data["version"], "version", 128)))
    if "extends" in data:
        ref = _str(data["extends"], "extends", 200)
        parse_ref(ref)
        out["extends"] = ref
    for key in ("description", "role"):
        if key in data:
            out[key] = _str(data[key], key, 4096 if key == "description" else 128)
    if "tools" in data:
        tools = _str_list(data["tools"], "tools", 32)
        if len(set(tools)) != len(tools):
            raise InvalidArgument("tools lists a tool twice", field="tools")
        out["tools"] = tools
    if "limits" in data:
        limits = data["limits"]
        if not isinstance(limits, dict):
            raise InvalidArgument("limits must be an object", field="limits")
        bad = sorted(set(limits) - set(LIMIT_KEYS))
        if bad:
            raise InvalidArgument(
                f"unknown limit {quote(bad[0])}; known: {', '.join(LIMIT_KEYS)}", field=f"limits.{bad[0]}"
            )
        out["limits"] = {k: _limit(v, f"limits.{k}") for k, v in limits.items()}
    if "env" in data:
        out["env"] = _env(data["env"])
    if "labels" in data:
        out["labels"] = _str_map(data["labels"], "labels")
    if "args" in data:
        out["args"] = _args(data["args"])
    if "module_sha256" in data:
        digest = _str(data["module_sha256"], "module_sha256", 64)
        if not SHA256_RE.fullmatch(digest):
            raise InvalidArgument("module_sha256 must be 64 lower-case hex digits", field="module_sha256")
        out["module_sha256"] = digest
    for key in ("input_schema", "output_schema"):
        if key in data:
            if not isinstance(data[key], dict):
                raise InvalidArgument(f"{key} must be a JSON object", field=key)
            out[key] = data[key]
    if "http_hosts" in data:
        hosts = _str_list(data["http_hosts"], "http_hosts", 16)
        for i, host in enumerate(hosts):
            if not HOST_PORT_RE.fullmatch(host):
                raise InvalidArgument(f"http_hosts[{i}] {quote(host)} must be host:port", field=f"http_hosts[{i}]")
        out["http_hosts"] = hosts
    if "retryable" in data:
        if not isinstance(data["retryable"], bool):
            raise InvalidArgument("retryable must be true or false", field="retryable")
        out["retryable"] = data["retryable"]
    if "files" in data:
        out["files"] = _files(data["files"])
    return Draft(out)


# --- resolution -----------------------------------------------------------------------------------

ParentLoader = Callable[[str, str], Manifest]
"""Loads a published, resolved manifest by name and version; raises NotFound if absent."""


def _check_lineage(draft: Draft, parent: Manifest, load_parent: ParentLoader) -> None:
    """Walk the parent chain: reject cycles (including self-extension) and chains deeper than the bound."""
    seen = {draft.ref}
    node: Manifest | None = parent
    depth = 1
    while node is not None:
        if node.ref in seen:
            raise FailedPrecondition(f"template {draft.ref} would inherit from itself through {node.ref}")
        seen.add(node.ref)
        if depth > MAX_INHERITANCE_DEPTH:
            raise FailedPrecondition(f"template {draft.ref} inherits through more than {MAX_INHERITANCE_DEPTH} levels")
        node = load_parent(*parse_ref(node.extends)) if node.extends else None
        depth += 1


def resolve(
    draft: Draft,
    default_limits: Mapping[str, int],
    load_parent: ParentLoader,
    module_sha256: str | None,
    uploaded_files: Mapping[str, TemplateFile] | None = None,
) -> Manifest:
    """Apply inheritance and defaults. `module_sha256` is the digest of the uploaded module, if any;
    `uploaded_files` the files uploaded with it (guest path -> digest and size)."""
    values = dict(draft.values)
    parent: Manifest | None = None
    if "extends" in values:
        if values["extends"] == draft.ref:
            raise FailedPrecondition(f"template {draft.ref} cannot extend itself")
        try:
            parent = load_parent(*parse_ref(values["extends"]))
        except NotFound as exc:
            raise FailedPrecondition(f"parent template {values['extends']} is not published; publish it first") from exc
        _check_lineage(draft, parent, load_parent)
    base = parent.to_dict() if parent else {}

    def merged(key: str) -> dict[str, Any]:
        return {**base.get(key, {}), **values.get(key, {})}

    limits = {**default_limits, **merged("limits")}
    declared = values.get("module_sha256")
    if module_sha256 and declared and declared != module_sha256:
        raise InvalidArgument(
            f"module_sha256 in the manifest ({declared}) does not match the uploaded module ({module_sha256})",
            field="module_sha256",
        )
    digest = module_sha256 or declared or base.get("module_sha256", "")
    if not digest:
        raise InvalidArgument("no module: upload one, or extend a template that has one", field="module_sha256")

    def pick(key: str, default: Any) -> Any:
        return values[key] if key in values else base.get(key, default)

    # Files merge path by path like env and labels; what was uploaded with this publish fills in (and must
    # agree with) what the manifest declares.
    files = {path: TemplateFile(**f) for path, f in base.get("files", {}).items()}
    files.update(values.get("files", {}))
    for path, upload in (uploaded_files or {}).items():
        declared_file = values.get("files", {}).get(path)
        if declared_file is not None and declared_file != upload:
            raise InvalidArgument(
                f"files.{path} in the manifest (sha256 {declared_file.sha256}, {declared_file.size} bytes) does not "
                f"match the uploaded file (sha256 {upload.sha256}, {upload.size} bytes)",
                field=f"files.{path}",
            )
        files[path] = upload
    check_file_tree(files)

    return Manifest(
        name=draft.name,
        version=draft.version,
        extends=values.get("extends", ""),
        description=pick("description", ""),
        role=pick("role", ""),
        tools=tuple(pick("tools", ())),
        limits=Limits(**{k: int(limits[k]) for k in LIMIT_KEYS}),
        env=merged("env"),
        args=tuple(pick("args", ())),
        labels=merged("labels"),
        module_sha256=digest,
        input_schema=pick("input_schema", {}),
        output_schema=pick("output_schema", {}),
        http_hosts=tuple(pick("http_hosts", ())),
        retryable=bool(pick("retryable", False)),
        files=dict(sorted(files.items())),
    )


def manifest_from_canonical(raw: bytes) -> Manifest:
    """Rebuild a resolved manifest from its canonical (signed) bytes, as verifiers do before running it."""
    data = json.loads(raw)
    return Manifest(
        name=data["name"],
        version=data["version"],
        extends=data["extends"],
        description=data["description"],
        role=data["role"],
        tools=tuple(data["tools"]),
        limits=Limits(**data["limits"]),
        env=data["env"],
        args=tuple(data["args"]),
        labels=data["labels"],
        module_sha256=data["module_sha256"],
        input_schema=data["input_schema"],
        output_schema=data["output_schema"],
        http_hosts=tuple(data["http_hosts"]),
        retryable=data["retryable"],
        files={path: TemplateFile(f["sha256"], f["size"]) for path, f in data.get("files", {}).items()},
    )
