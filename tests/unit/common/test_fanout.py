"""Fanout: the publisher returns before any receiver runs (past the inline bound), order is kept per
receiver, receivers are served a slice per loop iteration, a failing receiver does not stop the others."""

from __future__ import annotations

import asyncio

from services.common.fanout import Fanout


async def settle(fanout: Fanout[object]) -> None:
    while fanout.backlog:
        await asyncio.sleep(0)


async def test_publish_returns_before_any_receiver_runs_and_order_is_kept() -> None:
    fanout: Fanout[int] = Fanout(slice_size=4)
    got: list[list[int]] = [[] for _ in range(10)]
    receivers = [box.append for box in got]
    fanout.publish(1, receivers)
    fanout.publish(2, receivers)
    assert got == [[]] * 10 and fanout.backlog == 2  # nothing delivered on the publisher's path
    await settle(fanout)  # type: ignore[arg-type]
    assert got == [[1, 2]] * 10


async def test_receivers_are_served_one_slice_per_loop_iteration() -> None:
    fanout: Fanout[str] = Fanout(slice_size=3)
    got: list[list[str]] = [[] for _ in range(9)]
    fanout.publish("x", [box.append for box in got])
    served: list[int] = []
    while fanout.backlog:
        await asyncio.sleep(0)
        served.append(sum(map(len, got)))
    # Each loop iteration the delivery task served at most one slice: anything else ready (the
    # publisher's reply, other streams) ran in between.
    steps = [b - a for a, b in zip([0, *served], served, strict=False)]
    assert max(steps) <= 3 and served[-1] == 9


async def test_inline_below_delivers_at_once_unless_something_is_queued() -> None:
    fanout: Fanout[int] = Fanout(slice_size=2, inline_below=2)
    few: list[int] = []
    fanout.publish(1, [few.append])
    assert few == [1]
    many: list[list[int]] = [[] for _ in range(5)]
    fanout.publish(2, [box.append for box in many] + [few.append])
    fanout.publish(3, [few.append])  # queued behind 2, to keep the order
    assert few == [1]
    await settle(fanout)  # type: ignore[arg-type]
    assert few == [1, 2, 3]


async def test_a_failing_receiver_does_not_stop_the_others() -> None:
    fanout: Fanout[int] = Fanout()
    got: list[int] = []

    def broken(item: int) -> None:
        raise RuntimeError("boom")

    fanout.publish(7, [broken, got.append])
    await settle(fanout)  # type: ignore[arg-type]
    assert got == [7]


def test_a_new_event_loop_starts_a_fresh_delivery() -> None:
    fanout: Fanout[int] = Fanout()
    stale: list[int] = []

    async def leave_pending() -> None:
        fanout.publish(1, [stale.append])  # its loop closes before the delivery task runs

    loop = asyncio.new_event_loop()
    loop.run_until_complete(leave_pending())
    loop.close()
    fresh: list[int] = []

    async def publish_again() -> None:
        fanout.publish(2, [fresh.append])
        await settle(fanout)  # type: ignore[arg-type]

    asyncio.run(publish_again())
    assert fresh == [2] and stale == []
