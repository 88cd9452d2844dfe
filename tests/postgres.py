"""A real PostgreSQL for the tests: one server per test session (initdb + pg_ctl in a temp dir, see
mesh/pglocal.py), and an empty database per test that asks for `pg_dsn`.

Tests that need it are skipped, loudly, only when PostgreSQL is not installed at all (make setup
installs Debian's `postgresql`); a server that is installed but fails to start is an error.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from mesh.pglocal import LocalPostgres, bin_dir
from tests.harness import free_port


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    try:
        bin_dir()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    # Not under pytest's tmp dir: that is private to us (0700), and as root the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="af-postgres-"))
    server = LocalPostgres(root, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_dsn(postgres_server: LocalPostgres) -> Iterator[str]:
    """The DSN of a new, empty database on the session's server (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f"CREATE DATABASE {name}")
    yield _with_database(postgres_server.dsn, name)
    postgres_server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
