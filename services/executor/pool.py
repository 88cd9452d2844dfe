"""A bounded, adaptive pool of worker threads for sandbox runs.

Threads, because wasmtime releases the GIL while guest code runs, so runs proceed in parallel. The pool
keeps at least `min_workers` threads, starts another (up to `max_workers`) whenever a job is queued and
no worker is idle, and lets a thread above the minimum exit after `idle_seconds` without work. At most
`max_queue` jobs wait; beyond that `submit` raises ResourceExhausted at once, so the caller (through the
mesh) can retry on another executor instead of waiting here.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from services.common.errors import ResourceExhausted
from services.executor import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Capacity:
    workers: int
    max_workers: int
    busy: int
    queued: int


class WorkerPool:
    def __init__(self, min_workers: int, max_workers: int, max_queue: int, idle_seconds: float = 30.0) -> None:
        if not 0 <= min_workers <= max_workers or max_workers < 1 or max_queue < 0:
            raise ValueError("need 0 <= min_workers <= max_workers, max_workers >= 1, max_queue >= 0")
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.max_queue = max_queue
        self.idle_seconds = idle_seconds
        self._queue: collections.deque[Callable[[], None]] = collections.deque()
        self._cond = threading.Condition()
        self._workers = 0
        self._idle = 0
        self._closed = False
        with self._cond:
            for _ in range(min_workers):
                self._spawn()

    def _spawn(self) -> None:  # holds _cond
        self._workers += 1
        self._idle += 1
        threading.Thread(target=self._work, name=f"sandbox-worker-{self._workers}", daemon=True).start()
        metrics.POOL_SIZE.set(self._workers)

    def submit(self, job: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                raise ResourceExhausted("executor is shutting down; retry on another executor")
            # Queued jobs that no idle worker is about to take are the ones really waiting.
            waiting = len(self._queue) - self._idle
            if waiting >= 0:
                if self._workers < self.max_workers:
                    self._spawn()
                elif waiting >= self.max_queue:
                    raise ResourceExhausted(
                        f"executor is full ({self._workers} workers busy, {waiting} runs queued); "
                        "retry on another executor"
                    )
            self._queue.append(job)
            metrics.QUEUE_DEPTH.set(len(self._queue))
            self._cond.notify()

    def has_room(self) -> bool:
        """Whether submit() would take a job now (the same rule, without taking one)."""
        with self._cond:
            if self._closed:
                return False
            waiting = len(self._queue) - self._idle
            return waiting < 0 or self._workers < self.max_workers or waiting < self.max_queue

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    timed_out = not self._cond.wait(self.idle_seconds)
                    if timed_out and not self._queue and self._workers > self.min_workers:
                        self._retire()
                        return
                if self._closed and not self._queue:
                    self._retire()
                    return
                job = self._queue.popleft()
                self._idle -= 1
                metrics.QUEUE_DEPTH.set(len(self._queue))
                metrics.POOL_BUSY.set(self._workers - self._idle)
            try:
                job()
            except BaseException:  # a job must never kill its worker
                log.exception("sandbox job failed")
            finally:
                with self._cond:
                    self._idle += 1
                    metrics.POOL_BUSY.set(self._workers - self._idle)

    def _retire(self) -> None:  # holds _cond
        self._workers -= 1
        self._idle -= 1
        metrics.POOL_SIZE.set(self._workers)

    def capacity(self) -> Capacity:
        with self._cond:
            return Capacity(self._workers, self.max_workers, self._workers - self._idle, len(self._queue))

    def close(self) -> None:
        """Stop taking work; queued jobs still run, then the threads exit."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
