"""The Evaluate tab: pick a labelled set, run `loupe eval` through the engine off the GUI thread, read the report."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable
from pathlib import Path

from loupe.desktop.bridge import Background
from PySide6.QtCore import Qt, QThreadPool, QUrl, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

EvalStart = Callable[[str, threading.Event], Path]  # labelled set -> report folder; runs on a worker thread
INLINE_PNG = re.compile(r'src="data:image/png;base64,([^"]+)"')


class ReportBrowser(QTextBrowser):
    """A text browser that serves the report's inline PNGs from memory (Qt does not read data: URLs)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.images: dict[str, QImage] = {}

    def loadResource(self, kind: int, url: QUrl | str) -> object:  # Qt calls it by this name
        """An inline plot by its name, else what QTextBrowser finds."""
        name = url.toString() if isinstance(url, QUrl) else str(url)
        if name in self.images:
            return self.images[name]
        return super().loadResource(kind, url)

    def show_html(self, page: str) -> int:
        """Show `page` with each inline PNG swapped for a name served from memory; returns how many there were."""
        self.images.clear()

        def swap(match: re.Match[str]) -> str:
            name = f"loupe-plot-{len(self.images) + 1}.png"
            self.images[name] = QImage.fromData(base64.b64decode(match.group(1)))
            return f'src="{name}"'

        html = INLINE_PNG.sub(swap, page)
        self.setHtml(html)
        return len(self.images)


class EvalView(QWidget):
    """A labelled-set field, Evaluate and Stop buttons, and the report (tables and plots) in a text browser.

    `start` is built by the caller (e.g. loupe.eval.evaluate.Launcher): the widget owns no engine.
    """

    reportShown = Signal(str)  # the report folder
    failed = Signal(str)

    def __init__(self, start: EvalStart | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.start_fn = start
        self.stop = threading.Event()
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._job: Background | None = None
        self.path = QLineEdit()
        self.path.setPlaceholderText("labelled set: a folder from Export labelled, a .jsonl of {image, data} or COCO")
        self.browse = QPushButton("Browse…")
        self.browse.clicked.connect(self._browse)
        self.run_button = QPushButton("Evaluate")
        self.run_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop.set)
        self.status = QLabel("Measure the model on your own labelled images.")
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.browser = ReportBrowser()
        self.browser.setOpenExternalLinks(False)
        row = QHBoxLayout()
        for w in (self.path, self.browse, self.run_button, self.stop_button):
            row.addWidget(w)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.browser, 1)
        self.run_button.setEnabled(start is not None)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Labelled set folder")
        if folder:
            self.path.setText(folder)

    def start(self) -> None:
        """Evaluate the set in the path field on the worker thread; the report is shown when it is written."""
        labelled = self.path.text().strip()
        if self.start_fn is None or self._job is not None:
            return
        if not labelled:
            self.status.setText("Choose a labelled set first.")
            return
        self.stop.clear()
        self.run_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.status.setText(f"Evaluating {labelled}…")
        start_fn = self.start_fn
        self._job = Background(lambda: start_fn(labelled, self.stop), self)
        self._job.finished.connect(self._done)
        self._job.failed.connect(self._failed)
        self._job.start(self.pool)

    def _finish(self) -> None:
        self._job = None
        self.run_button.setEnabled(self.start_fn is not None)
        self.stop_button.setEnabled(False)

    def _done(self, folder: object) -> None:
        self._finish()
        self.show_report(Path(str(folder)))

    def _failed(self, message: str) -> None:
        self._finish()
        self.status.setText(f"Evaluation failed: {message}")
        self.failed.emit(message)

    def show_report(self, folder: Path) -> None:
        """Show `folder`/report.html; its inline PNGs become document resources (Qt does not read data: URLs)."""
        try:
            page = (folder / "report.html").read_text(encoding="utf-8")
        except OSError as exc:
            self.status.setText(f"No report in {folder}: {exc.strerror or exc}")
            return
        count = self.browser.show_html(page)
        self.status.setText(f"Report: {folder / 'report.html'} ({count} plots)")
        self.reportShown.emit(str(folder))

    def shutdown(self) -> None:
        """Stop a running evaluation between images and wait for the worker (call before the window closes)."""
        self.stop.set()
        self.pool.waitForDone()
