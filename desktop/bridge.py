"""The only place engine work (runner callbacks, image decoding) becomes Qt signals delivered on the GUI thread."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from loupe.core.errors import LoupeError
from loupe.core.images.load import load_image
from loupe.core.prefetch import Prefetcher
from loupe.core.tasks import Task
from loupe.core.types import Result
from loupe.desktop.runner import Batch, CloudAccess, LoadedModel, Runner
from PIL import Image, ImageOps
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

THUMB_SIDE = 48


class EngineBridge(QObject):
    """Owns the Runner; its callbacks arrive from the worker thread and are re-emitted as queued signals."""

    modelLoaded = Signal(str, bool)  # name, synthetic
    modelFailed = Signal(str)
    itemStarted = Signal(int, int)  # batch, index
    itemFinished = Signal(int, int, int, object, bool, object)  # batch, index, result id, Result, cached, steps
    itemCanceled = Signal(int, int)  # batch, index
    batchDone = Signal(int, int)  # batch, job id
    batchFailed = Signal(int, str)

    def __init__(
        self,
        load: Callable[[], LoadedModel],
        db_path: Path,
        parent: QObject | None = None,
        *,
        cloud: Callable[[], CloudAccess] = CloudAccess,
        prefetcher: Callable[[], Prefetcher] = Prefetcher,
    ) -> None:
        super().__init__(parent)
        self.db_path = db_path
        self.cloud = cloud
        self.prefetcher = prefetcher  # each worker reads the next image ahead with one of these
        self.runner = Runner(load=load, db_path=db_path, events=self, cloud=cloud, prefetcher=prefetcher)
        self.batches: dict[int, Batch] = {}

    def set_cloud(self, cloud: Callable[[], CloudAccess]) -> None:
        """Where the ladder reads the cloud settings and key from (the window's settings)."""
        self.cloud = cloud
        self.runner.cloud = cloud

    def start(self) -> None:
        """Begin loading the model on the worker thread."""
        self.runner.start()

    def reload(self, load: Callable[[], LoadedModel]) -> None:
        """Another model: stop the current worker (its queue is dropped) and start loading `load` instead."""
        self.runner.stop()
        self.runner = Runner(load=load, db_path=self.db_path, events=self, cloud=self.cloud, prefetcher=self.prefetcher)
        self.runner.start()

    def submit(self, paths: Sequence[str], task: Task, *, fresh: bool = False) -> Batch:
        """Queue images for analysis; progress comes back through the signals."""
        batch = self.runner.submit(paths, task, fresh=fresh)
        self.batches[batch.id] = batch
        return batch

    def pause(self, paused: bool) -> None:
        """Hold or release the queue between images."""
        self.runner.pause(paused)

    def cancel_item(self, batch: int, index: int) -> None:
        """Stop one image (running or waiting)."""
        self.runner.cancel_item(batch, index)

    def cancel_all(self) -> None:
        """Stop every image not finished yet, in every batch."""
        for batch in self.batches.values():
            self.runner.cancel_batch(batch)

    def stop(self, timeout: float | None = None) -> bool:
        """Cancel and wait for the worker thread; True when it has ended."""
        return self.runner.stop(timeout)

    # -- RunnerEvents: called on the worker thread; emitting to GUI-thread receivers queues the call ---------
    def model_loaded(self, name: str, synthetic: bool) -> None:
        self.modelLoaded.emit(name, synthetic)

    def model_failed(self, message: str) -> None:
        self.modelFailed.emit(message)

    def item_started(self, batch: int, index: int) -> None:
        self.itemStarted.emit(batch, index)

    def item_finished(
        self, batch: int, index: int, result_id: int, result: Result, cached: bool, steps: list[dict[str, object]]
    ) -> None:
        self.itemFinished.emit(batch, index, result_id, result, cached, steps)

    def item_canceled(self, batch: int, index: int) -> None:
        self.itemCanceled.emit(batch, index)

    def batch_done(self, batch: int, job_id: int) -> None:
        self.batchDone.emit(batch, job_id)

    def batch_failed(self, batch: int, message: str) -> None:
        self.batchFailed.emit(batch, message)


class Background(QObject):
    """One call run on a thread pool; `finished(value)` or `failed(message)` arrives on the GUI thread."""

    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[[], object], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.fn = fn

    def start(self, pool: QThreadPool) -> Background:
        """Queue the call on `pool`; returns self (keep it until a signal arrives)."""
        pool.start(self._run)
        return self

    def _run(self) -> None:
        try:
            value = self.fn()
        except Exception as exc:  # shown in the window, plainly
            self.failed.emit(f"{type(exc).__name__}: {exc}")
            return
        self.finished.emit(value)


def _thumbnail(path: str, side: int) -> Image.Image | None:
    """A small upright RGBA copy, decoded at reduced size where the format allows (JPEG); None: use load_image."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (side * 4, side * 4))  # JPEG decodes at 1/2..1/8 scale: a big photo in a few ms
            upright = ImageOps.exif_transpose(img)
            upright.thumbnail((side, side))
            return upright.convert("RGBA")
    except Exception:  # anything Pillow alone cannot open (HEIF, oversized, broken): the careful loader decides
        return None


class _Decode(QRunnable):
    def __init__(self, path: str, token: int, done: Signal, side: int | None = None) -> None:
        super().__init__()
        self.path, self.token, self.done, self.side = path, token, done, side

    def run(self) -> None:
        try:
            rgba = _thumbnail(self.path, self.side) if self.side is not None else None
            if rgba is None:
                rgba = load_image(self.path).image.convert("RGBA")  # upright, like the boxes' pixel space
        except (LoupeError, OSError):
            self.done.emit(self.token, QImage())
            return
        if self.side is not None:
            rgba.thumbnail((self.side, self.side))
        w, h = rgba.size
        image = QImage(rgba.tobytes(), w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
        self.done.emit(self.token, image)


class ImageDecoder(QObject):
    """Decodes images for display on a thread pool; `decoded(token, image)` arrives on the GUI thread."""

    decoded = Signal(int, QImage)  # a null QImage when the file cannot be shown

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._token = 0

    def request(self, path: str, side: int | None = None) -> int:
        """Start decoding (scaled to fit `side` px when given); returns the token the answer will carry."""
        self._token += 1
        self.pool.start(_Decode(path, self._token, self.decoded, side))
        return self._token

    def wait(self) -> None:
        """Let running decodes finish (on shutdown)."""
        self.pool.clear()
        self.pool.waitForDone()
