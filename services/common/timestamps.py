"""Unix seconds (what domain code keeps) <-> google.protobuf.Timestamp (what the contracts carry)."""

from __future__ import annotations

import math

from google.protobuf.timestamp_pb2 import Timestamp


def to_timestamp(unix: float) -> Timestamp:
    # Split before scaling: unix * 1e9 as a double loses the sub-microsecond digits.
    seconds = math.floor(unix)
    nanos = min(round((unix - seconds) * 1e9), 999_999_999)
    return Timestamp(seconds=seconds, nanos=nanos)


def to_optional_timestamp(unix: float | None) -> Timestamp | None:
    """None (an event that has not happened yet) stays unset in the message."""
    return None if unix is None else to_timestamp(unix)


def to_unix(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9
