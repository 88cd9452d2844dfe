"""What every List RPC shares: the label-selector grammar and the page-token framing.

A label selector is `key=value` terms joined by commas (`key==value` too, as kubectl writes equality);
whitespace around a term, key or value is trimmed, every term must match, and a key asked for with two
values is refused (nothing could match). Which keys can exist is the caller's business (`key_pattern`).

A page token is opaque to clients: a service's own position (a JSON object of its fields) and, under
`f`, a fingerprint of the filters it was issued for, in URL-safe base64 without padding. Decoding refuses
anything this framing did not produce, and a token issued for different filters (following it would silently
skip or repeat items). The scheduler's tokens are byte for byte what they were before this module (a
blue/green pair of different releases still pages through both colors); the registry's changed once.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from services.common.errors import InvalidArgument, quote

SELECTOR_FIELD = "label_selector"
TOKEN_FIELD = "page_token"


def parse_label_selector(selector: str, key_pattern: re.Pattern[str] | None = None) -> tuple[tuple[str, str], ...]:
    """' team = a , env==prod' -> (('env', 'prod'), ('team', 'a')): sorted, so equal selectors compare equal."""
    if not selector.strip():
        return ()
    pairs: dict[str, str] = {}
    for part in selector.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if value.startswith("="):  # "k==v"
            value = value[1:].strip()
        if not sep or not key or (key_pattern is not None and not key_pattern.fullmatch(key)):
            raise InvalidArgument(
                f"label_selector term {quote(part.strip())} must look like key=value (terms joined by commas)",
                field=SELECTOR_FIELD,
            )
        if pairs.get(key, value) != value:
            raise InvalidArgument(f"label_selector asks for two values of {quote(key)}", field=SELECTOR_FIELD)
        pairs[key] = value
    return tuple(sorted(pairs.items()))


def encode_page_token(position: dict[str, Any], fingerprint: str) -> str:
    raw = json.dumps({**position, "f": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, fingerprint: str) -> dict[str, Any]:
    """The position a token carries (its fields but `f`). InvalidArgument for a token this framing did not
    make, or one issued for different filters; the caller checks the position's fields and raises `not_issued()`
    when they are off."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        printed = data.pop("f")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise not_issued() from None
    if printed != fingerprint:
        raise InvalidArgument(
            "page_token was issued for different filters; repeat the same filters, or start again with an empty "
            "page_token",
            field=TOKEN_FIELD,
        )
    return dict(data)


def not_issued() -> InvalidArgument:
    return InvalidArgument(
        "page_token is not one this server issued; start again with an empty page_token", field=TOKEN_FIELD
    )
