"""`python -m services.executor`: the executor's settings and wiring, served by the common process kit."""

from __future__ import annotations

import sys

from services.common.app import Service, run_service
from services.executor.bootstrap import build
from services.executor.settings import ExecutorSettings
from services.templates.policy import PolicyError

# Run directories, the kv store and the module caches: one executor each, always.
SERVICE = Service(
    "executor",
    ExecutorSettings.from_env,
    build,
    setting_errors=(PolicyError,),
    own_dir=lambda s: s.data_dir,
)

if __name__ == "__main__":
    sys.exit(run_service(SERVICE))
