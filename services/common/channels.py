"""Client channels to upstreams. In the mesh the target is the caller's own sidecar on loopback,
which originates mTLS; the app itself speaks plaintext to loopback only."""

from __future__ import annotations

import grpc

from services.common.server import MAX_MESSAGE_BYTES
from services.common.telemetry import Telemetry

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Respect the servers' 10 s minimum ping interval, or they answer with GOAWAY.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.enable_retries", 0),  # retries belong to the mesh, which knows which methods are idempotent
]


def aio_channel(target: str, telemetry: Telemetry) -> grpc.aio.Channel:
    """A channel to `target`; it carries client spans when `telemetry` is on (fixed at creation, as grpc.aio
    channels fix their interceptors then)."""
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS, interceptors=telemetry.client_interceptors())
