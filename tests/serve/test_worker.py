"""The model lane: one thread, submission order, and a bounded queue (429 beyond it)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from loupe.serve.worker import Lane, LaneFull


def test_lane_runs_in_order_on_one_thread_and_refuses_beyond_its_queue() -> None:
    lane = Lane("test-lane", max_queue=2)
    gate = threading.Event()
    seen: list[tuple[int, str]] = []

    def job(n: int) -> int:
        if n == 0:
            gate.wait(30)
        seen.append((n, threading.current_thread().name))
        return n

    async def scenario() -> list[int]:
        first = asyncio.ensure_future(lane.call(job, 0))
        second = asyncio.ensure_future(lane.call(job, 1))
        await asyncio.sleep(0)  # let both calls register as pending (no waiting on the worker here)
        assert lane.pending == 2
        with pytest.raises(LaneFull):
            await lane.call(job, 2)
        gate.set()
        return list(await asyncio.gather(first, second))

    try:
        assert asyncio.run(scenario()) == [0, 1]
    finally:
        lane.close()
    assert [n for n, _ in seen] == [0, 1] and len({name for _, name in seen}) == 1
    assert lane.pending == 0
