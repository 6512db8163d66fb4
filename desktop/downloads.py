"""A model download (GGUF pair or MLX / ONNX directory) on a worker thread, with progress and cancel as Qt signals."""

from __future__ import annotations

import threading

from loupe.models import ModelStore
from PySide6.QtCore import QObject, QThreadPool, Signal


class DownloadCanceled(Exception):
    """Raised from the progress callback to stop a pull; the `.part` file stays, so a later pull resumes."""


class Download(QObject):
    """`progress(file, done, total)` while bytes arrive (total -1 when unknown), then `finished(name)`,
    `failed(message)` or `canceled()`, all delivered on the GUI thread."""

    progress = Signal(str, int, int)
    finished = Signal(str)
    failed = Signal(str)
    canceled = Signal()

    def __init__(self, store: ModelStore, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store, self.name = store, name
        self._cancel = threading.Event()
        self._done = threading.Event()

    def start(self, pool: QThreadPool) -> Download:
        """Run the pull on `pool`."""
        pool.start(self._run)
        return self

    def cancel(self) -> None:
        """Stop at the next chunk."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the pull has ended (for shutdown); True when it has."""
        return self._done.wait(timeout)

    def _progress(self, filename: str, done: int, total: int | None) -> None:
        if self._cancel.is_set():
            raise DownloadCanceled(filename)
        self.progress.emit(filename, done, -1 if total is None else total)

    def _run(self) -> None:
        try:
            if self.name in self.store.directories:  # an MLX / ONNX model directory: the same resumable fetch
                self.store.directories.pull(self.name, progress=self._progress)
            else:
                self.store.pull(self.name, progress=self._progress)
        except DownloadCanceled:
            self.canceled.emit()
        except Exception as exc:  # ModelDownloadError, ModelFileCorrupt, disk errors: said plainly
            self.failed.emit(str(exc) or type(exc).__name__)
        else:
            self.finished.emit(self.name)
        finally:
            self._done.set()
