"""One model, one thread: requests are queued onto the engine's thread and awaited without blocking the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from loupe.api import Engine
from loupe.core.images.load import MAX_PIXELS
from loupe.serve.limits import PixelBudget
from loupe.store import Store

T = TypeVar("T")


class LaneFull(Exception):
    """More requests are queued on a lane than it takes."""


class Lane:
    """A single worker thread; `call` runs a function on it and awaits the answer from asyncio."""

    def __init__(self, name: str, *, max_queue: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.max_queue = max_queue
        self.pending = 0  # touched only from the event loop's thread

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the lane's thread, in submission order (LaneFull when over max_queue)."""
        if self.max_queue is not None and self.pending >= self.max_queue:
            raise LaneFull(f"{self.pending} requests are already waiting for the model")
        self.pending += 1
        try:
            return await asyncio.wrap_future(self._pool.submit(fn, *args, **kwargs))
        finally:
            self.pending -= 1

    def close(self) -> None:
        """Finish queued work and stop the thread."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class Workers:
    """The loaded engine on its own lane, and the results store on another (SQLite wants one thread)."""

    def __init__(
        self, engine: Engine, db_path: str | Path, *, max_queue: int = 32, max_pixels: int = MAX_PIXELS
    ) -> None:
        self.engine = engine
        self.pixels = PixelBudget(max_pixels)  # decoded pixels held at once: one of the largest images allowed
        # images are decoded on one thread: the memory one decode frees is what the next reuses (on many threads,
        # each thread's malloc arena kept its own: 16 huge PNGs then peaked 0.3-0.8 GiB higher)
        self.decode_lane = Lane("loupe-serve-decode")
        self.model_lane = Lane("loupe-serve-model", max_queue=max_queue)
        self.store_lane = Lane("loupe-serve-store")
        self.db_path = Path(db_path)
        self._store: Store | None = None

    def store(self) -> Store:
        """The store, opened on first use; call only from the store lane."""
        if self._store is None:
            self._store = Store(self.db_path)
        return self._store

    def close(self) -> None:
        """Drain both lanes, close the store on its own thread, then free the model."""
        self.decode_lane.close()
        self.model_lane.close()
        if self._store is not None:
            store, self._store = self._store, None
            self.store_lane._pool.submit(store.close).result()
        self.store_lane.close()
        self.engine.close()
