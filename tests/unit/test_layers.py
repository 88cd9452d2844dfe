"""The two floors (STYLE.md): the services stand on `common/` (plumbing) and `templates/` (the trust
domain). `common/` imports neither the trust domain nor a service; `templates/` may use `common/`'s
plumbing but no service; no service imports another. Read from the import statements, so a new module
is checked without being listed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.harness import REPO

SERVICES = REPO / "services"
SERVICE_NAMES = ("registry", "signer", "executor", "scheduler")
# package -> the `services.*` packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "templates": {"common"},
    **{name: {"common", "templates"} for name in SERVICE_NAMES},
}


def _imported_packages(path: Path) -> set[str]:
    """The `services.<package>` names a module imports, relative imports resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: within the module's own package
                continue
            names = [node.module or ""]
        found |= {name.split(".")[1] for name in names if name.startswith("services.") and name.count(".") >= 1}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_floors_below_it(package: str) -> None:
    offending = {
        str(path.relative_to(REPO)): sorted(imported - ALLOWED[package] - {package})
        for path in sorted((SERVICES / package).rglob("*.py"))
        if (imported := _imported_packages(path)) - ALLOWED[package] - {package}
    }
    assert offending == {}, offending


def test_every_package_is_placed() -> None:
    packages = {p.name for p in SERVICES.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ALLOWED), packages ^ set(ALLOWED)


def test_the_trust_domain_reaches_the_contracts_only_through_its_messages_module() -> None:
    """templates/ never imports grpc, and only messages.py the generated protobuf messages."""
    offending: dict[str, list[str]] = {}
    for path in sorted((SERVICES / "templates").rglob("*.py")):
        roots = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                roots.add(node.module.split(".")[0])
        allowed = {"agentfactory", "google"} if path.name == "messages.py" else set()
        if found := sorted(roots & ({"grpc", "agentfactory", "google"} - allowed)):
            offending[str(path.relative_to(REPO))] = found
    assert offending == {}, offending
