"""Semantic Versioning 2.0.0: parsing and precedence (used to find a template's latest version)."""

from __future__ import annotations

import re
from functools import total_ordering

from services.common.errors import InvalidArgument

# \A...\Z and [0-9], not ^...$ and \d: "$" also matches before a final newline, and \d matches every
# Unicode digit ("1.0.\u0663" would be a look-alike of 1.0.3 that int() even parses).
_SEMVER = re.compile(
    r"\A(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z"
)


# major, minor, patch, 1 for a release (0 for a prerelease), the prerelease identifiers ranked
SortKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


@total_ordering
class Version:
    __slots__ = ("major", "minor", "patch", "prerelease", "text")

    def __init__(self, text: str) -> None:
        match = _SEMVER.fullmatch(text) if len(text) <= 128 else None
        if not match:
            shown = repr(text[:64]) + ("..." if len(text) > 64 else "")
            raise InvalidArgument(f"version {shown} is not a semantic version like 1.2.3", field="version")
        self.text = text
        self.major, self.minor, self.patch = (int(match.group(i)) for i in (1, 2, 3))
        self.prerelease = tuple(match.group(4).split(".")) if match.group(4) else ()

    def _key(self) -> SortKey:
        # A release outranks its prereleases; numeric identifiers rank below alphanumeric ones.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.text


def sort_key(text: str) -> SortKey:
    return Version(text)._key()
