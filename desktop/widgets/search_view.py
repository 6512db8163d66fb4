"""The Search tab: a query line (a `/pointer op value` expression, or words to look for), similar images and
near-duplicates of a result, each row with a thumbnail, its status and how alike it is.

Searches run off the GUI thread (a `Background` on the view's own pool), each on its own read connection to the
store file (opened and closed per search), so a slow `like` over many vectors never stalls the window and never
shares the window's connection. Only the latest search's answer is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from loupe.core.errors import LoupeError
from loupe.desktop.bridge import THUMB_SIDE, Background, ImageDecoder
from loupe.search import Hit, Hits, dupes, like, text, where
from loupe.store import Store
from PySide6.QtCore import QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

LIMIT = 500  # rows a `where` / `text` search shows
_ID = Qt.ItemDataRole.UserRole
_COLORS = {"ok": "#2e7d32", "error": "#c62828"}

Search = Callable[[Store], Hits]


def query_search(query: str) -> Search:
    """What the query line means: `/…` is a --where expression, anything else --text words; empty lists all."""
    q = query.strip()
    if not q or q.startswith("/"):
        return lambda store: where(store, q, limit=LIMIT)
    return lambda store: text(store, q, limit=LIMIT)


def duplicates_of(result_id: int | None) -> Search:
    """Every group of near-duplicates, the group holding RESULT_ID first (in store order otherwise)."""

    def run(store: Store) -> Hits:
        hits = dupes(store)
        group = next((h.group for h in hits if h.result_id == result_id), None)
        if group is None:
            return hits
        first = [h for h in hits if h.group == group]
        return Hits(first + [h for h in hits if h.group != group], measure=hits.measure, note=hits.note)

    return run


def similar_to(result_id: int) -> Search:
    """The stored results most like RESULT_ID's image, most alike first."""
    return lambda store: like(store, result_id)


def measure_text(hit: Hit) -> str:
    """How alike (or relevant) a row is, in a few characters."""
    parts = []
    if hit.group is not None:
        parts.append(f"group {hit.group}")
    if hit.distance is not None:
        parts.append(f"{hit.distance} bits")
    if hit.score is not None:
        parts.append(f"{hit.score:.3f}")
    return " · ".join(parts)


class SearchView(QWidget):
    """Query line, Search / Find similar / Show duplicates, the rows; `openResult(result_id)` on a double-click."""

    openResult = Signal(int)

    def __init__(self, db_path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.db_path = db_path
        self.query = QLineEdit()
        self.query.setPlaceholderText("Words to look for, or /pointer op value (e.g. /defects/*/label = crack)")
        self.query.returnPressed.connect(self.search)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        self.similar_button = QPushButton("Find similar")
        self.similar_button.setToolTip("Stored results whose picture looks most like the selected row's")
        self.similar_button.clicked.connect(self._similar_selected)
        self.dupes_button = QPushButton("Show duplicates")
        self.dupes_button.setToolTip("Groups of near-duplicate pictures (the selected row's group first)")
        self.dupes_button.clicked.connect(self._dupes_selected)
        self.message = QLabel("Search every stored result. Double-click a row to show it.")
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Image", "Status", "Alike", "Job", "Result", "Created"])
        self.tree.setRootIsDecorated(False)
        self.tree.setIconSize(QSize(THUMB_SIDE, THUMB_SIDE))
        self.tree.setColumnWidth(0, 320)
        self.tree.itemDoubleClicked.connect(self._open)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        line = QHBoxLayout()
        line.addWidget(self.query, 1)
        for b in (self.search_button, self.similar_button, self.dupes_button):
            line.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(line)
        layout.addWidget(self.message)
        layout.addWidget(self.tree, 1)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.thumbnails = ImageDecoder(self)
        self.thumbnails.decoded.connect(self._thumbnail)
        self._thumbs: dict[int, QTreeWidgetItem] = {}
        self._running: list[Background] = []
        self._token = 0
        self.hits: list[Hit] = []
        self.searched = 0  # answers shown so far (tests wait on it)
        self._update_buttons()

    # -- what a user asks -------------------------------------------------------------------------------
    def search(self) -> Background:
        """Run the query line's search."""
        q = self.query.text().strip()
        return self.run(query_search(q), f"“{q}”" if q else "all results")

    def find_similar(self, result_id: int) -> Background:
        """Rows most like result RESULT_ID's picture."""
        return self.run(similar_to(result_id), f"like result {result_id}")

    def show_duplicates(self, result_id: int | None = None) -> Background:
        """Groups of near-duplicates, RESULT_ID's group first."""
        return self.run(duplicates_of(result_id), "near-duplicates")

    def run(self, search: Search, label: str) -> Background:
        """Run SEARCH on its own connection off the GUI thread; its rows (or its error, one line) replace the view."""
        self._token += 1
        token, db = self._token, self.db_path

        def call() -> object:
            try:
                with Store(db) as store:
                    return search(store)
            except LoupeError as exc:  # a bad expression, an unknown result: said plainly
                return exc

        task = Background(call, self)
        task.finished.connect(lambda value, t=token, lb=label: self._answered(t, lb, value))
        task.failed.connect(lambda text, t=token, lb=label: self._answered(t, lb, RuntimeError(text)))
        for signal in (task.finished, task.failed):
            signal.connect(lambda *_, b=task: self._running.remove(b))
        self._running.append(task)
        self.message.setText(f"Searching {label}…")
        return task.start(self.pool)

    def result_ids(self) -> list[int]:
        """The result ids of the rows shown, top to bottom."""
        return [h.result_id for h in self.hits]

    def shutdown(self) -> None:
        """Let a running search and thumbnails finish (on closing)."""
        self.pool.waitForDone()
        self.thumbnails.wait()

    # -- answers ----------------------------------------------------------------------------------------
    def _answered(self, token: int, label: str, value: object) -> None:
        if token != self._token:  # a newer search was started: this answer is stale
            return
        self.searched += 1
        if isinstance(value, Exception):
            first = (str(value).strip().splitlines() or [type(value).__name__])[0]
            self.message.setText(f"Search {label} failed: {first}")
            self.message.setStyleSheet("color: #c62828;")
            return
        assert isinstance(value, Hits)
        self._show(list(value))
        said = f"{len(value)} result(s) for {label}" + (f" · by {value.measure}" if value.measure else "")
        self.message.setText(said + (f" · {value.note}" if value.note else ""))
        self.message.setStyleSheet("")

    def _show(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.tree.clear()
        self._thumbs.clear()
        for hit in hits:
            row = QTreeWidgetItem(
                [Path(hit.path).name, hit.status, measure_text(hit), str(hit.job_id), str(hit.result_id), hit.created]
            )
            row.setToolTip(0, hit.path)
            row.setData(0, _ID, hit.result_id)
            row.setForeground(1, QColor(_COLORS.get(hit.status, "#b26a00")))
            self.tree.addTopLevelItem(row)
            self._thumbs[self.thumbnails.request(hit.path, THUMB_SIDE)] = row
        self._update_buttons()

    def _thumbnail(self, token: int, image: QImage) -> None:
        row = self._thumbs.pop(token, None)
        if row is not None and not image.isNull():
            row.setIcon(0, QIcon(QPixmap.fromImage(image)))

    # -- rows -------------------------------------------------------------------------------------------
    def _selected_id(self) -> int | None:
        rows = self.tree.selectedItems()
        return int(rows[0].data(0, _ID)) if rows else None

    def _update_buttons(self) -> None:
        self.similar_button.setEnabled(self._selected_id() is not None)

    def _similar_selected(self) -> None:
        picked = self._selected_id()
        if picked is not None:
            self.find_similar(picked)

    def _dupes_selected(self) -> None:
        self.show_duplicates(self._selected_id())

    def _open(self, row: QTreeWidgetItem, _column: int) -> None:
        self.openResult.emit(int(row.data(0, _ID)))
