"""Creates that keep arriving while a scheduler is killed: the SIGKILL tests' load, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import grpc

from tests.integration.scheduler.conftest import Scheduler

# What recovery makes of a non-retryable agent whose run was in flight when its scheduler died.
LOST_REASON = "executor lost during run (scheduler restarted); template is not retryable"


class CreateLoad:
    """Creator threads (submit `creator(n)` to a pool) that alternate a retryable and a run-once template
    with unique request_ids until `stop` is set or the scheduler dies; `acked` maps every acknowledged
    agent id to its template."""

    def __init__(self, sched: Scheduler, prefix: str) -> None:
        self.sched, self.prefix = sched, prefix
        self.acked: dict[str, str] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def creator(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            template = "sched-work-retry" if (n + i) % 2 else "sched-work-once"
            try:
                agent = self.sched.create(template, request_id=f"{self.prefix}{n}-{i}")
            except grpc.RpcError:
                return  # the scheduler died under us: this create was never acknowledged
            with self._lock:
                self.acked[agent.id] = template
            i += 1
            time.sleep(0.01)
