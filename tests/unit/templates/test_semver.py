from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.templates.semver import Version, sort_key


def test_precedence_follows_semver() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-rc.1",
        "1.0.0",
        "1.2.0",
        "10.0.0",
    ]
    assert sorted(reversed(ordered), key=sort_key) == ordered
    assert Version("1.0.0+build.5") == Version("1.0.0")


@pytest.mark.parametrize("bad", ["1", "1.0", "v1.0.0", "1.0.0.0", "01.0.0", "1.0.0-", "", "1.0.0-01"])
def test_rejects_non_semver(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        Version(bad)
