"""`python -m services.scheduler`: the scheduler's settings and wiring, served by the common process kit."""

from __future__ import annotations

import sys

from services.common.app import Service, run_service
from services.scheduler.bootstrap import build
from services.scheduler.settings import SchedulerSettings

SERVICE = Service("scheduler", SchedulerSettings.from_env, build)

if __name__ == "__main__":
    sys.exit(run_service(SERVICE))
