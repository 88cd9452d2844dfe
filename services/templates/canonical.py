"""The canonical byte form of a resolved manifest: what the signer signs and every verifier checks.

Sorted keys, no insignificant whitespace, UTF-8, integers as integers. Re-formatting the JSON a
publisher sent cannot change these bytes, because they are produced from the parsed model.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
