"""Models: every catalog entry with its format (GGUF, ONNX, MLX), downloads with progress and cancel, and import of
local GGUFs."""

from __future__ import annotations

from pathlib import Path

from loupe.desktop.downloads import Download
from loupe.desktop.loading import format_problem
from loupe.models import InstalledModel, ModelError, ModelStore
from PySide6.QtCore import QThreadPool, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

_GGUF = "GGUF models (*.gguf);;All files (*)"


class ModelsDialog(QDialog):
    """Lists `store.listing()` (GGUF and directory models); `changed()` after a download or import completes."""

    changed = Signal()

    def __init__(self, store: ModelStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(900, 440)
        self.store = store
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.download: Download | None = None
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Model", "Format", "Kind", "State", "Size", "Note"])
        self.tree.setRootIsDecorated(False)
        for column, width in enumerate((190, 60, 80, 80, 80)):
            self.tree.setColumnWidth(column, width)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.start_download)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.clicked.connect(self.cancel_download)
        self.import_button = QPushButton("Import local GGUF…")
        self.import_button.clicked.connect(self._ask_import)
        self.bar = QProgressBar()
        self.bar.hide()
        self.message = QLabel()
        self.message.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.download_button, self.cancel_button, self.import_button):
            buttons.addWidget(b)
        buttons.addStretch()
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.bar)
        layout.addWidget(self.message)
        layout.addLayout(buttons)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the store (a quick check of files; no hashing)."""
        keep = self.selected()
        self.tree.clear()
        for m in self.store.listing():
            size = f"{m.size_bytes / 1e6:.1f} MB" if m.size_bytes else ""
            problem = format_problem(self.store, m.name)  # e.g. an ONNX model without onnxruntime: how to get it
            note = f"{problem}. {m.detail}" if problem else m.detail
            row = QTreeWidgetItem(
                [m.name + (" (default)" if m.is_default else ""), m.format, m.kind, m.state, size, note]
            )
            row.setData(0, 256, m.name)
            row.setToolTip(5, note)
            self.tree.addTopLevelItem(row)
            if m.name == keep or (
                keep is None and self.tree.currentItem() is None and m.kind == "catalog" and m.state != "installed"
            ):
                self.tree.setCurrentItem(row)  # the selection kept, else the first model one can download
        self._update_buttons()

    def selected(self) -> str | None:
        """The selected model's name."""
        rows = self.tree.selectedItems()
        return str(rows[0].data(0, 256)) if rows else None

    def select(self, name: str) -> None:
        """Select a model by name."""
        for i in range(self.tree.topLevelItemCount()):
            if self.tree.topLevelItem(i).data(0, 256) == name:
                self.tree.setCurrentItem(self.tree.topLevelItem(i))

    def _model(self, name: str | None) -> InstalledModel | None:
        return next((m for m in self.store.listing() if m.name == name), None)

    def _update_buttons(self) -> None:
        model = self._model(self.selected())
        busy = self.download is not None
        self.download_button.setEnabled(
            not busy and model is not None and model.kind == "catalog" and model.state != "installed"
        )
        self.cancel_button.setEnabled(busy)

    # -- download ----------------------------------------------------------------------------------------
    def start_download(self) -> Download | None:
        """Pull the selected catalog model (GGUF pair or model directory) off the GUI thread, showing progress."""
        name = self.selected()
        if name is None or self.download is not None:
            return None
        self.download = Download(self.store, name, self)
        self.download.progress.connect(self._progress)
        self.download.finished.connect(lambda n: self._ended(f"{n} is installed.", error=False))
        self.download.failed.connect(lambda text: self._ended(f"Download failed: {text}", error=True))
        self.download.canceled.connect(
            lambda: self._ended(
                "Download canceled; what arrived is kept and a later download resumes from there.", error=False
            )
        )
        self.bar.setRange(0, 0)
        self.bar.show()
        self._say(f"Downloading {name}…")
        self._update_buttons()
        return self.download.start(self.pool)

    def cancel_download(self) -> None:
        """Stop the download at its next chunk."""
        if self.download is not None:
            self.download.cancel()

    def _progress(self, filename: str, done: int, total: int) -> None:
        if total > 0:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * done / total))
            self.bar.setFormat(f"{filename}: {done / 1e6:.1f} / {total / 1e6:.1f} MB")
        else:
            self.bar.setFormat(f"{filename}: {done / 1e6:.1f} MB")

    def _ended(self, text: str, *, error: bool) -> None:
        self.download = None
        self.bar.hide()
        self._say(text, error=error)
        self.refresh()
        self.changed.emit()

    # -- import ------------------------------------------------------------------------------------------
    def _ask_import(self) -> None:
        text, _ = QFileDialog.getOpenFileName(self, "Text model (GGUF)", "", _GGUF)
        if not text:
            return
        mmproj, _ = QFileDialog.getOpenFileName(self, "Vision projector (mmproj GGUF)", str(Path(text).parent), _GGUF)
        if mmproj:
            self.import_files(text, mmproj)

    def import_files(self, text: str, mmproj: str, name: str = "") -> str | None:
        """Register a local text GGUF + mmproj pair; the model's name, or None with the reason shown."""
        try:
            resolved = self.store.import_local(Path(text), Path(mmproj), name=name or None)
        except ModelError as exc:
            self._say(f"Import refused: {exc}", error=True)
            return None
        self._say(f"Imported {resolved.name} ({resolved.family}).")
        self.refresh()
        self.select(resolved.name)
        self.changed.emit()
        return resolved.name

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #c62828;" if error else "")

    def done(self, code: int) -> None:
        """Closing the dialog cancels a download in progress and waits for it to stop."""
        if self.download is not None:
            self.download.cancel()
            self.pool.waitForDone()
        super().done(code)


def picker_label(model: InstalledModel) -> str:
    """How the picker shows a model: its name, the format when not GGUF, and whether it still needs a download."""
    notes = [model.format] if model.format != "gguf" else []
    if model.state != "installed" and model.kind != "synthetic":
        notes.append("not downloaded" if model.state == "missing" else model.state)
    return model.name + (f" ({', '.join(notes)})" if notes else "")


class ModelPicker(QWidget):
    """Which model analyzes: every catalog entry with its format (those not downloaded shown but disabled), plus
    'Models…' (download, import)."""

    chosen = Signal(str)

    def __init__(self, store: ModelStore, current: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.combo = QComboBox()
        self.combo.setMinimumWidth(170)
        self.manage = QPushButton("Models…")
        self.manage.clicked.connect(self.open_dialog)
        self.dialog: ModelsDialog | None = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Model"))
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.manage)
        self.fill(current)
        self.combo.activated.connect(lambda _i: self.chosen.emit(self.current()))

    def current(self) -> str:
        """The name of the model shown in the combo ("" when none)."""
        return str(self.combo.currentData() or "")

    def fill(self, current: str = "") -> None:
        """Every known model, the usable ones (installed, or synthetic: built on first use) enabled; `current`
        selected."""
        current = current or self.current()
        self.combo.clear()
        items = self.combo.model()
        for m in self.store.listing():
            self.combo.addItem(picker_label(m), m.name)
            if m.state != "installed" and m.kind != "synthetic":
                items.item(self.combo.count() - 1).setEnabled(False)  # type: ignore[attr-defined]
        if current and self.combo.findData(current) < 0:
            self.combo.addItem(current, current)
        if current:
            self.combo.setCurrentIndex(self.combo.findData(current))

    def set_store(self, store: ModelStore) -> None:
        """Look in another model directory: the combo, and the dialog if it is open, show its models at once."""
        self.store = store
        self.fill()
        if self.dialog is not None:
            self.dialog.store = store
            self.dialog.refresh()

    def set_current(self, name: str) -> None:
        """Show `name` as the model in use (without emitting `chosen`)."""
        self.fill(name)

    def open_dialog(self) -> ModelsDialog:
        """Open the models dialog (non-modal); the combo is refreshed when it changes anything."""
        self.dialog = ModelsDialog(self.store, self)
        self.dialog.changed.connect(lambda: self.fill())
        self.dialog.show()
        return self.dialog
