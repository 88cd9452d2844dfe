"""`python -m services.signer`: the signer's settings and wiring, served by the common process kit."""

from __future__ import annotations

import sys

from services.common.app import Service, run_service
from services.signer.bootstrap import build
from services.signer.settings import SignerSettings

# The key ledger (both backends) and the local backend's keys: one signer each (the local backend also
# claims its key directory, services/signer/local_backend.py).
SERVICE = Service("signer", SignerSettings.from_env, build, own_dir=lambda s: s.data_dir)

if __name__ == "__main__":
    sys.exit(run_service(SERVICE))
