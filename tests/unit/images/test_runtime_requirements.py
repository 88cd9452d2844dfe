"""What the images install is pinned: every name in images/requirements-runtime.txt has its
version in requirements.txt (the Dockerfile installs with `-c requirements.txt`; an unpinned name
would float)."""

from __future__ import annotations

import re

from mesh import REPO


def _names(text: str) -> list[str]:
    lines = (ln.split("#", 1)[0].strip() for ln in text.splitlines())
    return [re.split(r"[=<>!~\[ ]", ln, maxsplit=1)[0].lower().replace("_", "-") for ln in lines if ln]


def test_every_runtime_package_is_pinned() -> None:
    pinned = {
        ln.split("==")[0].strip().lower().replace("_", "-")
        for ln in (REPO / "requirements.txt").read_text().splitlines()
        if "==" in ln and not ln.lstrip().startswith("#")
    }
    runtime = _names((REPO / "images" / "requirements-runtime.txt").read_text())
    assert runtime and not set(runtime) - pinned, sorted(set(runtime) - pinned)
