"""`python -m services.scheduler`: the scheduler's settings and wiring, served by the common process kit."""

from __future__ import annotations

import sys

from services.common.app import Service, run_service
from services.scheduler.bootstrap import build
from services.scheduler.settings import SchedulerSettings

# With PostgreSQL (AF_DATABASE_URL) replicas share the journal, and data_dir holds nothing of it.
SERVICE = Service(
    "scheduler",
    SchedulerSettings.from_env,
    build,
    own_dir=lambda s: s.data_dir if s.database_url is None else None,
)

if __name__ == "__main__":
    sys.exit(run_service(SERVICE))
