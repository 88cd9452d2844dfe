"""Unit fixtures: a local key backend in a tmp dir (no processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.signer.local_backend import LocalKeyBackend
from services.signer.service import SignerService


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalKeyBackend]:
    store = LocalKeyBackend(tmp_path, "templates")
    store.open()
    yield store
    store.close()


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[SignerService]:
    svc = SignerService(LocalKeyBackend(tmp_path, "templates"))
    await svc.start()
    yield svc
    svc.close()
