"""SPIFFE ids, parsed strictly: the one grammar every identity in the mesh must fit.

An id is ``spiffe://<trust domain>/<path>`` where the path is one of two fixed shapes:

    sa/<workload>                  a service's workload identity (its X.509-SVID)
    role/<role>/user/<name>        a person or CI job at the gateway

Nothing else parses: no other scheme spelling (``SPIFFE://``), no upper case anywhere, no port,
user info, query or fragment, no empty or dot segments, no percent-encoding, no trailing slash.
The same grammar is written as the anchored regular expressions the Envoy templates use
(``ID_PATTERN``), so Envoy and the services refuse exactly the same ids. Callers compare parsed
ids whole, never by prefix or suffix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "spiffe://"
MAX_ID_LENGTH = 2048  # the SPIFFE spec's bound on a whole id
ROLES = ("admin", "publisher", "operator", "viewer")

# A DNS-style trust domain: lower-case labels of letters, digits and inner dashes, dot-separated.
TRUST_DOMAIN_PATTERN = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
# One path segment: starts with a letter or digit (so never "." or ".."), then letters, digits, "-", "_".
# No counted repetition: Envoy's RE2 refuses programs past a small size, and {0,62} alone exceeds it.
# The whole id is bounded by MAX_ID_LENGTH instead.
SEGMENT_PATTERN = r"[a-z0-9][a-z0-9_-]*"
ROLE_PATTERN = "|".join(ROLES)


def path_pattern() -> str:
    """The path grammar (without the leading slash) as a regular expression, RE2- and re-compatible."""
    return rf"(?:sa|role/(?:{ROLE_PATTERN})/user)/{SEGMENT_PATTERN}"


def id_pattern(trust_domain: str | None = None) -> str:
    """A regular expression matching a whole id; with ``trust_domain``, only ids of that domain."""
    domain = re.escape(trust_domain) if trust_domain is not None else TRUST_DOMAIN_PATTERN
    return rf"spiffe://{domain}/{path_pattern()}"


_ID = re.compile(rf"spiffe://({TRUST_DOMAIN_PATTERN})/({path_pattern()})")


class InvalidSpiffeId(ValueError):
    """The text is not an id of the mesh's grammar. The message quotes at most a short prefix."""


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    segments: tuple[str, ...]

    @property
    def workload(self) -> str | None:
        """The service name of a workload id (sa/<workload>), else None."""
        return self.segments[1] if self.segments[0] == "sa" else None

    @property
    def role(self) -> str | None:
        """The role of a person's id (role/<role>/user/<name>), else None."""
        return self.segments[1] if self.segments[0] == "role" else None

    def __str__(self) -> str:
        return f"{SCHEME}{self.trust_domain}/{'/'.join(self.segments)}"


def _quote(text: str, limit: int = 64) -> str:
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def parse(text: str) -> SpiffeId:
    """Parse ``text`` as a whole id of the grammar above, or raise InvalidSpiffeId."""
    if len(text) > MAX_ID_LENGTH:
        raise InvalidSpiffeId(f"SPIFFE id longer than {MAX_ID_LENGTH} characters")
    match = _ID.fullmatch(text)
    if match is None:
        raise InvalidSpiffeId(f"not a SPIFFE id of this mesh: {_quote(text)}")
    return SpiffeId(match.group(1), tuple(match.group(2).split("/")))


def parse_or_none(text: str) -> SpiffeId | None:
    try:
        return parse(text)
    except InvalidSpiffeId:
        return None
