"""`python -m services.registry`: the registry's settings and wiring, served by the common process kit."""

from __future__ import annotations

import sys

from services.common.app import Service, run_service
from services.registry.bootstrap import build
from services.registry.settings import RegistrySettings
from services.templates.policy import PolicyError

# With PostgreSQL (AF_DATABASE_URL) replicas share the store, and data_dir holds nothing of it.
SERVICE = Service(
    "registry",
    RegistrySettings.from_env,
    build,
    setting_errors=(PolicyError,),
    own_dir=lambda s: s.data_dir if s.database_url is None else None,
)

if __name__ == "__main__":
    sys.exit(run_service(SERVICE))
