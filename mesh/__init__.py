"""The service mesh: local CA, Envoy sidecar and gateway configs, blue/green weights.

Everything here renders or drives *real* Envoy processes; nothing in the services imports it.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"
DEFAULT_TOPOLOGY = Path(__file__).resolve().parent / "topology.yaml"
DEFAULT_CERTS_DIR = BUILD / "certs"
DEFAULT_OUT_DIR = BUILD / "mesh"
