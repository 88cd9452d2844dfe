"""The one shutdown order every service goes through (services/common/lifecycle.py): health NOT_SERVING,
then the server stops with its grace, then background work ends, then the service's close list in its
order (each even when one before it fails), then telemetry flushes. Observed on recording stand-ins for
the server, its health servicer and the telemetry: no server runs here (the same order on a real process
and a real SIGTERM: tests/integration/common/test_service_kit.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.common.lifecycle import App, shut_down
from services.common.telemetry import Telemetry


class Recorder:
    def __init__(self) -> None:
        self.steps: list[str] = []


class Health:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def enter_graceful_shutdown(self) -> None:
        self.rec.steps.append("health NOT_SERVING")


class Server:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def stop(self, grace: float) -> None:
        self.rec.steps.append(f"server stop, grace {grace}")


class RecordingTelemetry(Telemetry):
    def __init__(self, rec: Recorder) -> None:
        super().__init__(None)
        self.rec = rec

    def shutdown(self) -> None:
        self.rec.steps.append("telemetry flush")


class Listening:
    def __init__(self, rec: Recorder) -> None:
        self.health = Health(rec)
        self.server = Server(rec)


def test_drain_and_close_run_in_the_one_documented_order() -> None:
    rec = Recorder()

    async def scenario() -> None:
        stopping = asyncio.Event()

        async def waits_for_stopping() -> None:
            await stopping.wait()
            rec.steps.append("background saw stopping")

        async def runs_until_cancelled() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                rec.steps.append("background cancelled")
                raise

        async def close_client() -> None:
            rec.steps.append("close client")

        def close_store() -> None:
            rec.steps.append("close store")

        def broken_close() -> None:
            rec.steps.append("close broken")
            raise OSError("disk gone")

        app = App(servicers=[], close=[close_client, broken_close, close_store], stopping=stopping)
        tasks = [asyncio.create_task(waits_for_stopping()), asyncio.create_task(runs_until_cancelled())]
        await asyncio.sleep(0)  # both are waiting
        listening: Any = Listening(rec)  # the two methods shut_down calls, recorded
        await shut_down(app, listening, 2.5, tasks, RecordingTelemetry(rec))
        assert all(task.done() for task in tasks)

    asyncio.run(scenario())
    assert rec.steps[:2] == ["health NOT_SERVING", "server stop, grace 2.5"]
    assert sorted(rec.steps[2:4]) == ["background cancelled", "background saw stopping"]
    assert rec.steps[4:] == ["close client", "close broken", "close store", "telemetry flush"]
