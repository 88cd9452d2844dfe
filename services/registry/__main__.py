"""`python -m services.registry`: the registry's settings and wiring, served by the common process kit."""

from __future__ import annotations

import sys

from services.common.app import Service, run_service
from services.registry.bootstrap import build
from services.registry.settings import RegistrySettings
from services.templates.policy import PolicyError

SERVICE = Service("registry", RegistrySettings.from_env, build, setting_errors=(PolicyError,))

if __name__ == "__main__":
    sys.exit(run_service(SERVICE))
