"""The desktop worker (loupe.desktop.runner, Qt-free) reads the next image ahead, and pause and cancel still hold.

Real llama.cpp on the tiny synthetic model, a real SQLite store; the events arrive on the worker thread and the test
steers the queue from them (pause and cancel while the first image is in hand), as the window's buttons would.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from loupe.core.images.load import LoadedImage, load_image
from loupe.core.prefetch import Prefetcher
from loupe.core.tasks import builtin_task
from loupe.desktop.runner import Runner
from loupe.models.synthetic import SyntheticModel
from loupe.store import Store

from tests.desktop.conftest import tiny_loader, write_images


class Steer:
    """Runner events: as image 0 starts, pause the queue and cancel image 1, as the window's buttons would."""

    def __init__(self) -> None:
        self.runner: Runner | None = None
        self.log: list[tuple[str, int]] = []
        self.first_done = threading.Event()
        self.ended = threading.Event()
        self.failures: list[str] = []

    def model_loaded(self, name: str, synthetic: bool) -> None:
        pass

    def model_failed(self, message: str) -> None:
        self.failures.append(message)
        self.first_done.set()
        self.ended.set()

    def item_started(self, batch: int, index: int) -> None:
        self.log.append(("started", index))
        if index == 0 and self.runner is not None:
            self.runner.pause(True)
            self.runner.cancel_item(batch, 1)

    def item_finished(self, batch: int, index: int, result_id: int, result: Any, cached: bool, steps: Any) -> None:
        self.log.append(("finished", index))
        if index == 0:
            self.first_done.set()

    def item_canceled(self, batch: int, index: int) -> None:
        self.log.append(("canceled", index))

    def batch_done(self, batch: int, job_id: int) -> None:
        self.ended.set()

    def batch_failed(self, batch: int, message: str) -> None:
        self.model_failed(message)


def test_next_image_is_read_ahead_and_pause_and_cancel_still_hold(
    tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    decoded: list[tuple[str, str]] = []

    def load(path: str) -> LoadedImage:
        decoded.append((Path(path).name, threading.current_thread().name))
        return load_image(path)

    events = Steer()
    runner = Runner(
        load=tiny_loader(tiny_models["smolvlm"]),
        db_path=tmp_path / "loupe.db",
        events=events,
        prefetcher=lambda: Prefetcher(load),
    )
    events.runner = runner
    images = write_images(tmp_path / "in", 3, seed=60)
    try:
        runner.start()
        runner.submit([str(p) for p in images], builtin_task("describe"))
        assert events.first_done.wait(60) and not events.failures
        assert runner.paused and not events.ended.is_set()  # held after image 0, as the Pause button does
        # While image 0 ran, the next image not canceled (image 2) was read and decoded on the prefetch thread.
        assert decoded == [(images[2].name, decoded[0][1])] and decoded[0][1].startswith("loupe-prefetch")
        runner.pause(False)
        assert events.ended.wait(60) and not events.failures
    finally:
        assert runner.stop(30)
    assert events.log == [("started", 0), ("finished", 0), ("canceled", 1), ("started", 2), ("finished", 2)]
    assert [name for name, _ in decoded] == [images[2].name]  # image 2 read once, ahead; image 1 never
    with Store(tmp_path / "loupe.db") as store:
        stored = store.results()
        assert [Path(s.path).name for s in stored] == [images[0].name, images[2].name]
        assert {Path(i.path).name: i.state for i in store.items(stored[0].job_id)}[images[1].name] == "pending"
    assert not [t.name for t in threading.enumerate() if t.name.startswith("loupe-")]
