"""Names, versions, refs, label keys and request ids: a valid value plus anything is not valid.

Property tests over the validators that guard input (services/templates and the scheduler's domain): a
trailing newline, whitespace, NUL, a zero-width or non-ASCII digit makes a look-alike of a real
value, and each must be refused, not accepted as a distinct name.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.errors import InvalidArgument
from services.scheduler.domain import CreateSpec, parse_label_selector, validate_labels, validate_spec
from services.templates.manifest import NAME_RE, parse_ref
from services.templates.semver import Version

NAMES = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\Z")
VERSIONS = st.tuples(*(st.integers(0, 999),) * 3).map(lambda t: ".".join(map(str, t)))
TAILS = st.sampled_from(["\n", "\r\n", " ", "\t", "\x00", "\u200b", "\u00a0", "\n\n"])
DIGIT_LOOKALIKES = st.sampled_from(["\u0663", "\u06f3", "\uff13", "\u0969"])  # Arabic, Persian, full-width, Devanagari


@settings(max_examples=150, deadline=None)
@given(NAMES, TAILS)
def test_a_name_with_a_tail_is_not_a_name(name: str, tail: str) -> None:
    assert NAME_RE.fullmatch(name)
    assert NAME_RE.match(name + tail) is None  # even a prefix match refuses it now
    with pytest.raises(InvalidArgument):
        parse_ref(f"{name}{tail}@1.0.0")


@settings(max_examples=150, deadline=None)
@given(VERSIONS, TAILS)
def test_a_version_with_a_tail_is_not_a_version(version: str, tail: str) -> None:
    assert str(Version(version)) == version
    with pytest.raises(InvalidArgument):
        Version(version + tail)


@settings(max_examples=60, deadline=None)
@given(DIGIT_LOOKALIKES)
def test_non_ascii_digits_are_not_version_digits(digit: str) -> None:
    with pytest.raises(InvalidArgument):
        Version(f"1.0.{digit}")


def test_refusals_quote_only_a_short_prefix() -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_ref("x" * 100_000 + "@1.0.0")
    assert len(err.value.message) < 200
    with pytest.raises(InvalidArgument) as err:
        Version("1" * 100_000)
    assert len(err.value.message) < 200


@settings(max_examples=100, deadline=None)
@given(NAMES, TAILS)
def test_scheduler_guards_refuse_tails(name: str, tail: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_labels({name + tail: "v"})
    with pytest.raises(InvalidArgument):
        validate_spec(CreateSpec(template_name=name + tail, template_version="", input=b"", labels={}, request_id=""))
    with pytest.raises(InvalidArgument):
        validate_spec(CreateSpec(template_name=name, template_version="", input=b"", labels={}, request_id="r" + tail))
    # A selector is a query and trims whitespace around its terms by design; inside a key, nothing passes.
    with pytest.raises(InvalidArgument):
        parse_label_selector(f"{name}{tail}x=v")
