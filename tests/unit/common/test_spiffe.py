"""The strict SPIFFE id parser, the audit caller it feeds, and its agreement with the Envoy regex."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import audit, mesh_headers, spiffe

GOOD = [
    "spiffe://agentfactory.local/sa/gateway",
    "spiffe://agentfactory.local/sa/executor",
    "spiffe://agentfactory.local/role/admin/user/admin",
    "spiffe://agentfactory.local/role/viewer/user/ci-bot_2",
    "spiffe://example.org/sa/registry",
]
HOSTILE = [
    "",
    "spiffe://agentfactory.local",
    "spiffe://agentfactory.local/",
    "spiffe://agentfactory.local/sa/",
    "spiffe://agentfactory.local/sa/gateway/",
    "spiffe://agentfactory.local/sa//gateway",
    "spiffe://agentfactory.local/sa/./gateway",
    "spiffe://agentfactory.local/sa/../sa/gateway",
    "spiffe://agentfactory.local/role/admin/user/x/../../sa/gateway",
    "spiffe://agentfactory.local/role/admin/user/x/..",
    "spiffe://agentfactory.local/sa/gate%77ay",
    "spiffe://agentfactory.local/sa/%2e%2e",
    "spiffe://agentfactory.local/sa/gateway%00",
    "SPIFFE://agentfactory.local/sa/gateway",
    "Spiffe://agentfactory.local/sa/gateway",
    "spiffe://AgentFactory.local/sa/gateway",
    "spiffe://agentfactory.local/SA/gateway",
    "spiffe://agentfactory.local/sa/Gateway",
    "spiffe://agentfactory.local/role/Admin/user/x",
    "spiffe://agentfactory.local/role/root/user/x",
    "spiffe://agentfactory.local/role/admin/user/",
    "spiffe://agentfactory.local/role/admin/x",
    "spiffe://agentfactory.local/sa/gateway\n",
    "spiffe://agentfactory.local/sa/gateway ",
    " spiffe://agentfactory.local/sa/gateway",
    "spiffe://agentfactory.local:443/sa/gateway",
    "spiffe://user@agentfactory.local/sa/gateway",
    "spiffe://agentfactory.local/sa/gateway?x=1",
    "spiffe://agentfactory.local/sa/gateway#frag",
    "spiffe://agentfactory.local./sa/gateway",
    "spiffe://.agentfactory.local/sa/gateway",
    "spiffe://agentfactory..local/sa/gateway",
    "spiffe:///sa/gateway",
    "spiffe:/agentfactory.local/sa/gateway",
    "https://agentfactory.local/sa/gateway",
    "spiffe://agentfactory.local/sa/gateway,spiffe://agentfactory.local/sa/scheduler",
    "spiffe://agentfactory.local/sa/gate\u0301way",
    "spiffe://agentfactory.local/sa/gatew\u0430y",  # Cyrillic a
    "spiffe://agentfactory.locaI/sa/gateway",  # capital i
    "spiffe://agentfactory\u2024local/sa/gateway",  # one dot leader
]


@pytest.mark.parametrize("text", GOOD)
def test_good_ids_parse_and_print_back(text: str) -> None:
    parsed = spiffe.parse(text)
    assert str(parsed) == text
    assert re.fullmatch(spiffe.id_pattern(), text)


def test_parts() -> None:
    assert spiffe.parse("spiffe://agentfactory.local/sa/gateway").workload == "gateway"
    person = spiffe.parse("spiffe://agentfactory.local/role/viewer/user/bob")
    assert (person.role, person.workload, person.trust_domain) == ("viewer", None, "agentfactory.local")


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_ids_are_refused(text: str) -> None:
    with pytest.raises(spiffe.InvalidSpiffeId):
        spiffe.parse(text)
    assert re.fullmatch(spiffe.id_pattern(), text) is None


def test_error_quotes_only_a_short_prefix() -> None:
    with pytest.raises(spiffe.InvalidSpiffeId) as err:
        spiffe.parse("spiffe://agentfactory.local/sa/" + "x" * 1000 + "/")
    assert len(str(err.value)) < 120
    with pytest.raises(spiffe.InvalidSpiffeId, match="longer than"):
        spiffe.parse("x" * 100_000)


def test_trust_domain_pattern_pins_the_domain() -> None:
    pattern = spiffe.id_pattern("agentfactory.local")
    assert re.fullmatch(pattern, "spiffe://agentfactory.local/sa/gateway")
    for look_alike in ("agentfactoryxlocal", "agentfactory.local.evil", "evil.agentfactory.local", "agentfactory.loca"):
        assert re.fullmatch(pattern, f"spiffe://{look_alike}/sa/gateway") is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("spiffe:/.%aglocrtwyAS-_0\n,"), max_size=60))
def test_parser_and_envoy_regex_agree(text: str) -> None:
    parsed = spiffe.parse_or_none(text)
    assert (parsed is not None) == (re.fullmatch(spiffe.id_pattern(), text) is not None)
    if parsed is not None:
        # What parses is a whole id: printing it back gives the same text, and no segment is a dot one.
        assert str(parsed) == text
        assert all(seg not in ("", ".", "..") for seg in parsed.segments)


def _xfcc(uri: str) -> dict[str, str]:
    return {mesh_headers.XFCC: f'By=spiffe://agentfactory.local/sa/registry;Hash=ab;URI="{uri}"'}


def test_audit_caller_is_the_parsed_peer() -> None:
    assert audit.caller_from_metadata({}) == audit.UNAUTHENTICATED
    gw = "spiffe://agentfactory.local/sa/gateway"
    assert audit.caller_from_metadata(_xfcc(gw)) == gw
    user = "spiffe://agentfactory.local/role/admin/user/a"
    assert audit.caller_from_metadata({**_xfcc(gw), mesh_headers.PRINCIPAL: user}) == f"{user} via {gw}"


@pytest.mark.parametrize(
    "peer",
    [
        "spiffe://agentfactory.local/role/admin/user/x/../../sa/gateway",
        "spiffe://agentfactory.local/sa/not-the/sa/gateway",
        "spiffe://agentfactory.local/sa/evilgateway",
    ],
)
def test_a_look_alike_peer_cannot_vouch_for_a_user(peer: str) -> None:
    md = {**_xfcc(peer), mesh_headers.PRINCIPAL: "spiffe://agentfactory.local/role/admin/user/mallory"}
    assert "mallory" not in audit.caller_from_metadata(md)


def test_gateway_principal_that_is_not_an_id_names_nobody() -> None:
    gw = "spiffe://agentfactory.local/sa/gateway"
    md = {**_xfcc(gw), mesh_headers.PRINCIPAL: "spiffe://agentfactory.local/role/admin/user/a,spiffe://x/sa/y"}
    assert audit.caller_from_metadata(md) == gw
