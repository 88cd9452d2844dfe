"""Signer metrics: signatures by key version, verifications by result, and the age of every live key."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    from services.signer.service import KeySet

SIGNATURES = Counter("agentfactory_signer_signatures_total", "Signatures made, by key version.", ["key_version"])
VERIFICATIONS = Counter(
    "agentfactory_signer_verifications_total",
    "Verify calls by result: valid, mismatch, revoked, unknown_version, unknown_key.",
    ["result"],
)
KEY_AGE = Gauge(
    "agentfactory_signing_key_age_seconds",
    "Seconds since each live key version was created (alert when the signing key gets old).",
    ["key_version"],
)
KEY_LATEST = Gauge("agentfactory_signing_key_latest_version", "The key version that signs now.")
KEY_MIN = Gauge("agentfactory_signing_key_min_version", "The lowest key version that still verifies.")

_live: set[str] = set()


def observe_key_set(keys: KeySet) -> None:
    """Point the age gauges at the live versions; revoked versions disappear from the exposition."""
    current = {str(k.key_version): k.created_unix for k in keys.keys}
    for gone in _live - current.keys():
        KEY_AGE.remove(gone)
    for version, created in current.items():

        def age(created: float = created) -> float:
            return max(0.0, time.time() - created)

        KEY_AGE.labels(version).set_function(age)
    _live.clear()
    _live.update(current)
    KEY_LATEST.set(keys.latest_version)
    KEY_MIN.set(keys.min_version)
