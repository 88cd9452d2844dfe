"""The e2e subset on PostgreSQL: the mesh of `make run BACKEND=postgres` (the registry and both scheduler
colors on a local PostgreSQL that supervisord runs), isolated like the SQLite one, once for this folder.

A few tests, not the whole suite again: publish and run, blue/green with one shared journal, and an agent
surviving its scheduler's SIGKILL mid-run. The rest of the e2e suite runs on the embedded default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from afctl.client import Client
from mesh.pglocal import LocalPostgres
from tests.e2e.conftest import _MESH, role_clients
from tests.harness_mesh import E2EMesh, start_mesh


@pytest.fixture(scope="package")
def e2e_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    mesh = start_mesh(tmp_path_factory.mktemp("e2e-pg-mesh"), backend="postgres")
    _MESH.append(mesh)  # the parent conftest prints its logs for a failing test
    try:
        yield mesh
    finally:
        _MESH.remove(mesh)
        mesh.stop()


@pytest.fixture(scope="package")
def as_role(e2e_mesh: E2EMesh) -> Callable[[str], Client]:
    """Clients of this folder's mesh (the parent's fixture would bind to the SQLite one)."""
    return role_clients(e2e_mesh)


@pytest.fixture(scope="package")
def database(e2e_mesh: E2EMesh) -> LocalPostgres:
    """The mesh's PostgreSQL, for reading what the services stored (as its superuser)."""
    assert e2e_mesh.postgres_dir is not None and e2e_mesh.topo.database is not None
    return LocalPostgres(e2e_mesh.postgres_dir, e2e_mesh.topo.database.port)
