"""Shared fixtures. Service fixtures start real processes (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import REPO, ServiceProcess

WASM_DIR = REPO / "build" / "wasm"


@pytest.fixture
def signer_process(tmp_path: Path) -> Iterator[ServiceProcess]:
    """A real signer on the local (embedded) key backend."""
    with ServiceProcess("signer", tmp_path, {"AF_SIGNER_BACKEND": "local"}) as proc:
        yield proc
