"""`python -m services.signer`: the signer's settings and wiring, served by the common process kit."""

from __future__ import annotations

import sys

from services.common.app import Service, run_service
from services.signer.bootstrap import build
from services.signer.settings import SignerSettings

SERVICE = Service("signer", SignerSettings.from_env, build)

if __name__ == "__main__":
    sys.exit(run_service(SERVICE))
