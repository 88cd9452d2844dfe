"""End-to-end fixtures: the whole system of `make run`, isolated, once per session.

Every test here talks to the gateway only (as a user would), except where it reads what the mesh
did (logs, route versions). A failing test's report names the mesh's log directory and what
supervisord saw, plus the tail of each service log, so a CI failure can be read from its output.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from afctl.client import Client
from tests.harness_mesh import E2EMesh, attach_mesh, start_mesh

LOG_TAIL_LINES = 15

_MESH: list[E2EMesh] = []


@pytest.fixture(scope="package")
def e2e_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    attach = os.environ.get("AF_E2E_MESH_DIR")
    if attach:
        # A mesh left running by `python -m tests.harness_mesh up DIR`: used, not stopped.
        mesh = attach_mesh(Path(attach))
        _MESH.append(mesh)
        yield mesh
        _MESH.clear()
        return
    mesh = start_mesh(tmp_path_factory.mktemp("e2e-mesh"))
    _MESH.append(mesh)
    try:
        yield mesh
    finally:
        _MESH.clear()
        mesh.stop()


def role_clients(mesh: E2EMesh) -> Callable[[str], Client]:
    """One gateway client per role, with the role's client certificate (the mesh closes them when it stops)."""
    clients: dict[str, Client] = {}

    def make(role: str) -> Client:
        if role not in clients:
            clients[role] = mesh.client(role, timeout=15)
        return clients[role]

    return make


@pytest.fixture(scope="package")
def as_role(e2e_mesh: E2EMesh) -> Callable[[str], Client]:
    """A gateway client with a role's client certificate (closed at the end of the session)."""
    return role_clients(e2e_mesh)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed or not _MESH:
        return
    mesh = _MESH[0]
    tails = []
    for log in sorted(mesh.logs.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        if lines:
            tails.append(f"--- {log.name} (last {len(lines)} lines)\n" + "\n".join(lines))
    report.sections.append(("e2e mesh", mesh.describe() + "\n" + "\n".join(tails)))
