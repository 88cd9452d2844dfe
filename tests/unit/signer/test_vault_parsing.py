"""Pure helpers of the vault adapter (the adapter itself is tested against a real OpenBao)."""

from __future__ import annotations

import base64

import pytest

from services.signer.vault_backend import parse_creation_time, parse_transit_signature


def test_transit_signature_prefix_becomes_the_key_version() -> None:
    raw = bytes(range(256))
    assert parse_transit_signature("vault:v12:" + base64.b64encode(raw).decode()) == (12, raw)


@pytest.mark.parametrize("value", ["", "vault:v1:", "vault:1:AAAA", "other:v1:AAAA", "vault:vx:AAAA", "vault:v1:***"])
def test_malformed_transit_signatures_are_rejected(value: str) -> None:
    with pytest.raises(ValueError):
        parse_transit_signature(value)


def test_creation_time_with_nanoseconds() -> None:
    assert parse_creation_time("2026-11-21T05:41:05.123456789Z") == pytest.approx(1795239665.123456)
    assert parse_creation_time("2026-11-21T05:41:05Z") == pytest.approx(1795239665.0)
