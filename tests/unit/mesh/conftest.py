"""The repository's own topology, rendered once into a temp dir with a throwaway CA."""

from __future__ import annotations

import pytest

from tests.rendered_mesh import Rendered, render_repo_topology

__all__ = ["Rendered", "rendered"]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render_repo_topology(tmp_path_factory.mktemp("rendered"))
