"""Where images come in: drop files or folders, or use the Open dialogs."""

from __future__ import annotations

from loupe.core.images.files import IMAGE_EXTENSIONS
from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

_FILTER = "Images (" + " ".join(f"*{e}" for e in sorted(IMAGE_EXTENSIONS)) + ");;All files (*)"


def paths_from_mime(mime: QMimeData) -> list[str]:
    """Local files and folders in a drop, as dropped (the window expands folders, and remembers them as folders)."""
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]


class DropZone(QWidget):
    """Emits `pathsDropped` with the files and folders of a drop or an Open dialog (folders not expanded)."""

    pathsDropped = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setObjectName("dropZone")
        self.setMinimumHeight(90)
        self.setStyleSheet("#dropZone { border: 2px dashed palette(mid); border-radius: 8px; }")
        label = QLabel("Drop images or folders here")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        open_files = QPushButton("Open images…")
        open_files.clicked.connect(self.open_files)
        open_folder = QPushButton("Open folder…")
        open_folder.clicked.connect(self.open_folder)
        buttons = QHBoxLayout()
        buttons.addStretch()
        buttons.addWidget(open_files)
        buttons.addWidget(open_folder)
        buttons.addStretch()
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        layout.addLayout(buttons)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        if self.accept_mime(event.mimeData()):
            event.acceptProposedAction()

    def accept_mime(self, mime: QMimeData) -> bool:
        """Take the files of a drop (or paste); True when there was anything to take."""
        paths = paths_from_mime(mime)
        if paths:
            self.pathsDropped.emit(paths)
        return bool(paths)

    def open_files(self) -> None:
        """Ask for images with a dialog."""
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", "", _FILTER)
        if files:
            self.pathsDropped.emit(list(files))

    def open_folder(self) -> None:
        """Ask for a folder with a dialog."""
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images")
        if folder:
            self.pathsDropped.emit([folder])
