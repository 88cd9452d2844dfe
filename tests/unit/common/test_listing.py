"""The label-selector grammar and page-token framing every List RPC shares (services/common/listing.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common import listing
from services.common.errors import InvalidArgument


def test_selector_grammar() -> None:
    assert listing.parse_label_selector("") == listing.parse_label_selector("  ") == ()
    assert listing.parse_label_selector(" team = a , env==prod") == (("env", "prod"), ("team", "a"))
    assert listing.parse_label_selector("a=1,b=") == (("a", "1"), ("b", ""))
    assert listing.parse_label_selector("a=1,a=1") == (("a", "1"),)  # the same term twice is one term
    # A value is everything after the first `=` (or `==`): template label values may hold `=`.
    assert listing.parse_label_selector("a=b=c,d===e") == (("a", "b=c"), ("d", "=e"))


@pytest.mark.parametrize("bad", ["team", "=a", "a=1,,b=2", "team=a,team=b", "a=1,a==2"])
def test_selector_refusals_name_the_field(bad: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        listing.parse_label_selector(bad)
    assert err.value.field == "label_selector"


def test_a_key_pattern_refuses_keys_that_cannot_exist() -> None:
    pattern = re.compile(r"[a-z]+")
    assert listing.parse_label_selector("team=a", pattern) == (("team", "a"),)
    with pytest.raises(InvalidArgument):
        listing.parse_label_selector("Team=a", pattern)


def test_the_scheduler_token_format_is_unchanged() -> None:
    # What domain.encode_page_token produced before the framing moved here: a blue/green pair of
    # releases must keep reading each other's tokens.
    assert listing.encode_page_token({"t": 5, "i": "a9"}, "ff") == "eyJ0Ijo1LCJpIjoiYTkiLCJmIjoiZmYifQ"


@given(st.dictionaries(st.text(max_size=4).filter(lambda k: k != "f"), st.integers() | st.text(max_size=8)),
       st.text(max_size=16))  # fmt: skip
def test_tokens_round_trip(position: dict[str, object], fingerprint: str) -> None:
    token = listing.encode_page_token(position, fingerprint)
    assert re.fullmatch(r"[A-Za-z0-9_-]*", token)
    assert listing.decode_page_token(token, fingerprint) == position
    with pytest.raises(InvalidArgument) as err:
        listing.decode_page_token(token, fingerprint + "x")
    assert "different filters" in str(err.value)


@given(st.text(max_size=64) | st.binary(max_size=48).map(lambda b: listing.encode_page_token({"x": b.hex()}, "")[2:]))
def test_any_text_is_a_token_or_a_precise_refusal(token: str) -> None:
    try:
        listing.decode_page_token(token, "fp")
    except InvalidArgument as err:
        assert err.field == "page_token" and len(str(err)) < 120  # never repeats the token
