"""The main window: composes the drop zone, task and model pickers, queue, result view, review tab and settings,
and wires signals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from loupe.core.images.files import expand
from loupe.core.secrets import KeyringLike, get_api_key
from loupe.core.tasks import Task
from loupe.core.types import Result
from loupe.desktop.bridge import Background, EngineBridge, ImageDecoder
from loupe.desktop.eval_tab import eval_tab
from loupe.desktop.exporting import CHOICES as EXPORTS
from loupe.desktop.exporting import export
from loupe.desktop.runner import CloudAccess, LoadedModel
from loupe.desktop.settings import AppSettings, load_settings, save_settings
from loupe.desktop.widgets.about import AboutDialog
from loupe.desktop.widgets.drop_zone import DropZone
from loupe.desktop.widgets.models_dialog import ModelPicker
from loupe.desktop.widgets.queue_view import QueueView
from loupe.desktop.widgets.result_view import ResultView
from loupe.desktop.widgets.review_panel import ReviewPanel
from loupe.desktop.widgets.search_view import SearchView
from loupe.desktop.widgets.settings_dialog import SettingsDialog
from loupe.desktop.widgets.task_picker import TaskPicker
from loupe.models import ModelStore, default_model_root
from loupe.store import Store
from PySide6.QtCore import QMimeData, QSettings, Qt, QThreadPool, QTimer
from PySide6.QtGui import QCloseEvent, QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

MakeLoader = Callable[[str], Callable[[], LoadedModel]]

LOCAL_ONLY = "On this machine only"
_BANNER = "padding: 6px; border-radius: 4px; color: white; background: {};"


def ask_to_stop(parent: QWidget, unfinished: int) -> bool:
    """Ask whether to stop with images still in the queue."""
    answer = QMessageBox.question(
        parent,
        "Stop analyzing?",
        f"{unfinished} image(s) are not analyzed yet. Stop and quit? Finished results are already saved.",
    )
    return answer == QMessageBox.StandardButton.Yes


class MainWindow(QMainWindow):
    """Owns no engine logic: it forwards drops to the bridge and shows what the bridge reports."""

    def __init__(
        self,
        bridge: EngineBridge,
        store: Store,
        *,
        default_task: str | None = None,
        confirm_stop: Callable[[QWidget, int], bool] = ask_to_stop,
        settings: QSettings | None = None,
        model_store: ModelStore | None = None,
        make_loader: MakeLoader | None = None,
        model_name: str = "",
        ring: KeyringLike | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings  # window geometry, last task and model, settings persist here (None: nothing kept)
        self.app_settings = load_settings(settings) if settings is not None else AppSettings()
        self.ring = ring  # None: the OS keyring (tests pass a fake)
        self.make_loader = make_loader
        if default_task is None:
            default_task = (
                str(settings.value("task", self.app_settings.default_task))
                if settings is not None
                else self.app_settings.default_task
            )
        self.setWindowTitle("Loupe")
        self.resize(1200, 760)
        self.bridge, self.store, self.confirm_stop = bridge, store, confirm_stop
        self.decoder = ImageDecoder(self)
        self._tasks: dict[int, Task] = {}
        self._shown_token = 0
        self._review_token = 0
        self.loaded_model = model_name
        self.job_ids: list[int] = []  # store jobs of this session, for exports
        self.exports: list[Background] = []
        self._export_pool = QThreadPool(self)
        self._closed = False

        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setTextFormat(Qt.TextFormat.PlainText)
        self.banner.hide()
        self.model_label = QLabel("Loading model…")
        self.privacy = QLabel()
        self.tasks = TaskPicker(default_task)
        self.models = ModelPicker(model_store, model_name) if model_store is not None else None
        self.drop = DropZone()
        self.queue = QueueView()
        self.result_view = ResultView()
        self.review = ReviewPanel(store)

        top = QHBoxLayout()
        top.addWidget(self.tasks, 1)
        top.addWidget(self.privacy)
        if self.models is not None:
            top.addWidget(self.models)
        top.addWidget(self.model_label)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.drop)
        left_layout.addWidget(self.queue, 1)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.result_view)
        split.setSizes([330, 870])
        self.tabs = QTabWidget()
        self.tabs.addTab(split, "Analyze")
        self.tabs.addTab(self.review, "Review")
        self.evaluate = eval_tab(bridge.db_path, lambda: self.tasks.task, self._model_name, make_loader)
        self.tabs.addTab(self.evaluate, "Evaluate")
        self.search = SearchView(bridge.db_path)
        self.tabs.addTab(self.search, "Search")
        self._result_ids: dict[str, int] = {}  # image path -> its latest stored result (Find similar needs the id)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.banner)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self._build_menu()
        self._build_help_menu()
        if settings is not None and settings.contains("geometry"):
            self.restoreGeometry(settings.value("geometry"))

        self.drop.pathsDropped.connect(self.enqueue)
        bridge.set_cloud(self.cloud_access)
        self.tasks.changed.connect(self._update_privacy)
        if self.models is not None:
            self.models.chosen.connect(self.switch_model)
        self.queue.pauseToggled.connect(bridge.pause)
        self.queue.cancelAll.connect(bridge.cancel_all)
        self.queue.cancelOne.connect(bridge.cancel_item)
        self.queue.retryOne.connect(self.retry)
        bridge.itemCanceled.connect(self.queue.mark_canceled)
        QShortcut(QKeySequence.StandardKey.Paste, self, self.paste)
        self.tasks.problem.connect(lambda text: self.statusBar().showMessage(f"Task refused: {text}"))
        self.queue.resultSelected.connect(self._show_result)
        self.decoder.decoded.connect(self._image_decoded)
        self.review.reviewed.connect(lambda *_: self._update_review_tab())
        self.review.showing.connect(self._review_showing)
        for view in (self.result_view, self.review):
            view.findSimilar.connect(self.find_similar)
            view.showDuplicates.connect(self.show_duplicates)
        self.search.openResult.connect(self.open_stored)
        if self.review.current is not None:  # results left for review by an earlier run
            self._review_showing(self.review.current.path)
        bridge.modelLoaded.connect(self._model_loaded)
        bridge.modelFailed.connect(self._model_failed)
        bridge.itemStarted.connect(self.queue.mark_running)
        bridge.itemFinished.connect(self._item_finished)
        bridge.batchDone.connect(lambda _batch, job_id: self.job_ids.append(job_id))
        bridge.batchFailed.connect(lambda _b, text: self._show_banner(f"A batch stopped: {text}", "#c62828"))
        self._update_review_tab()
        self._update_privacy()

    # -- settings, model, privacy --------------------------------------------------------------------------
    def cloud_access(self) -> CloudAccess:
        """What the ladder may use now (called on the worker thread; reads one immutable settings object)."""
        cloud = self.app_settings.cloud
        key = get_api_key(cloud.preset, cloud.key_env(), ring=self.ring) if cloud.enabled else None
        return CloudAccess(cloud.config(), key)

    def open_settings(self) -> SettingsDialog:
        """The settings dialog (non-modal); saved settings apply to the next drop."""
        dialog = SettingsDialog(self.app_settings, ring=self.ring, parent=self, db_path=self.bridge.db_path)
        dialog.accepted.connect(lambda: self.apply_settings(dialog.settings()))
        dialog.show()
        self.settings_dialog = dialog
        return dialog

    def apply_settings(self, new: AppSettings) -> None:
        """Keep and persist new settings; threads and the model directory apply when a model is next loaded."""
        reload = (new.threads, new.model_dir) != (self.app_settings.threads, self.app_settings.model_dir)
        if new.model_dir != self.app_settings.model_dir and self.models is not None:
            root = Path(new.model_dir) if new.model_dir else default_model_root()
            self.models.set_store(ModelStore(root, catalog=self.models.store.catalog))  # picker and dialog at once
        if new.default_task != self.app_settings.default_task:
            self.tasks.combo.setCurrentText(new.default_task)  # a new default is also the task from now on
        self.app_settings = new
        if self.settings is not None:
            save_settings(self.settings, new)
        self._update_privacy()
        self.statusBar().showMessage(
            "Settings saved" + (" (threads and model directory apply when a model is next loaded)" if reload else ""),
            5000,
        )

    def switch_model(self, name: str) -> bool:
        """Load another model (refused while images are waiting or running); True when it started loading."""
        if self.make_loader is None:
            return False
        if self.queue.unfinished():
            self.statusBar().showMessage("Finish or cancel the queue before switching models", 5000)
            if self.models is not None:
                self.models.set_current(self.app_settings.model)
            return False
        self.app_settings = replace(self.app_settings, model=name)
        self.model_label.setText(f"Loading {name}…")
        self.drop.setEnabled(True)
        self.banner.hide()
        self.bridge.reload(self.make_loader(name))
        return True

    def _update_privacy(self) -> None:
        cloud = self.app_settings.cloud
        if self.app_settings.sends_data(self.tasks.task):
            base_url, model = cloud.config().resolved()
            self.privacy.setText(f"May send images to {base_url}" + (f" ({model})" if model else ""))
            self.privacy.setStyleSheet(_BANNER.format("#b26a00"))
            self.privacy.setToolTip(
                "This task's escalation ladder has a cloud step and the cloud is enabled in "
                "Settings: doubtful images may leave this machine (every request is audited)."
            )
        else:
            self.privacy.setText(LOCAL_ONLY)
            self.privacy.setStyleSheet(_BANNER.format("#2e7d32"))
            self.privacy.setToolTip("Nothing is sent anywhere for this task.")

    def _remember(self, paths: list[str]) -> None:
        self.app_settings = self.app_settings.with_recent(paths)
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.app_settings.recent_files:
            self.recent_menu.addAction(path, lambda p=path: self.enqueue([p]))
        self.recent_menu.setEnabled(bool(self.app_settings.recent_files))

    # -- input ------------------------------------------------------------------------------------------
    def enqueue(self, paths: list[str]) -> None:
        """Queue images and the images inside folders with the selected task (they wait for the model if it is
        still loading); Recent remembers what was given, folders as folders."""
        if not paths:
            return
        files = list(expand(paths))
        self._remember(list(paths))
        if not files:
            self.statusBar().showMessage(f"No images in {', '.join(paths)}", 5000)
            return
        batch = self.bridge.submit(files, self.app_settings.task_for_run(self.tasks.task))
        self._tasks[batch.id] = batch.task
        self.queue.add(batch.id, batch.paths)
        self.statusBar().showMessage(f"{len(batch.paths)} image(s) queued ({batch.task.name})")

    def retry(self, batch: int, index: int, path: str) -> None:
        """Analyze one image again (never from the cache), in its own row."""
        again = self.bridge.submit([path], self._tasks[batch], fresh=True)
        self._tasks[again.id] = again.task
        self.queue.rekey((batch, index), (again.id, 0))

    def drop_mime(self, mime: QMimeData) -> bool:
        """Take a drop or a paste of files (what the drop zone does with a real drop)."""
        return self.drop.accept_mime(mime)

    def paste(self) -> Background | None:
        """Ctrl+V: queue the files on the clipboard (copied in a file manager), or a copied picture (saved as a
        PNG beside the results store, off the GUI thread, then queued)."""
        mime = QApplication.clipboard().mimeData()
        if mime is not None and mime.hasUrls() and self.drop.accept_mime(mime):
            return None
        if mime is not None and mime.hasImage():
            image = QImage(QApplication.clipboard().image())
            folder = self.bridge.db_path.parent / "pasted"
            path = folder / f"pasted-{datetime.now():%Y%m%d-%H%M%S-%f}.png"

            def save() -> str:
                folder.mkdir(parents=True, exist_ok=True)
                if not image.save(str(path), "PNG"):
                    raise OSError(f"cannot write {path}")
                return str(path)

            task = Background(save, self)
            task.finished.connect(lambda saved: self.enqueue([saved]))
            task.failed.connect(lambda text: self._show_banner(f"The pasted picture was not saved: {text}", "#c62828"))
            for signal in (task.finished, task.failed):
                signal.connect(lambda *_, t=task: self.exports.remove(t))
            self.exports.append(task)
            return task.start(self._export_pool)
        self.statusBar().showMessage("Nothing to paste: copy a picture, or image files in your file manager", 5000)
        return None

    def _build_menu(self) -> None:
        menu = self.menuBar().addMenu("&File")
        menu.addAction("Open images…", self.drop.open_files)
        menu.addAction("Open folder…", self.drop.open_folder)
        menu.addAction("Open task file…", self.tasks.open_file)
        menu.addAction("New task…", self.tasks.open_editor)
        menu.addAction("Copy task…", self.tasks.copy_task)
        self.recent_menu = menu.addMenu("Recent")
        self._fill_recent()
        menu.addSeparator()
        for kind, title, pattern, name in EXPORTS:  # every format the CLI writes, overlays, the labelled set
            menu.addAction(title, lambda k=kind, t=title, f=pattern, n=name: self._ask_export(k, t, f, n))
        menu.addSeparator()
        menu.addAction("Settings…", QKeySequence.StandardKey.Preferences, self.open_settings)
        if self.models is not None:
            menu.addAction("Models…", self.models.open_dialog)
        menu.addSeparator()
        menu.addAction("Quit", QKeySequence.StandardKey.Quit, self.close)

    def _build_help_menu(self) -> None:
        menu = self.menuBar().addMenu("&Help")
        menu.addAction("About Loupe…", self.open_about)

    def open_about(self) -> AboutDialog:
        """Help → About: version, license, documentation."""
        dialog = AboutDialog(self)
        dialog.show()
        return dialog

    def _ask_export(self, kind: str, title: str, pattern: str, name: str) -> None:
        if pattern:
            path, _ = QFileDialog.getSaveFileName(self, title.rstrip("…"), name, pattern)
        else:
            path = QFileDialog.getExistingDirectory(self, title.rstrip("…"))
        if path:
            self.export_to(kind, Path(path))

    def export_to(self, kind: str, out: Path) -> Background:
        """Export this session's results (or the latest job's) off the GUI thread; the outcome shows in the window."""
        jobs = tuple(self.job_ids)
        task = Background(lambda: export(self.bridge.db_path, jobs, out, kind), self)
        task.finished.connect(lambda summary: self.statusBar().showMessage(f"Exported: {summary}"))
        task.failed.connect(lambda text: self._show_banner(f"Export failed: {text}", "#c62828"))
        for signal in (task.finished, task.failed):
            signal.connect(lambda *_, t=task: self.exports.remove(t))
        self.exports.append(task)
        return task.start(self._export_pool)

    # -- from the bridge (GUI thread) --------------------------------------------------------------------
    def _model_loaded(self, name: str, synthetic: bool) -> None:
        self.loaded_model = name
        self.model_label.setText(f"Ready: {name}" if self.models is not None else f"Model: {name}")
        if self.models is not None:
            self.models.set_current(name)
        self.statusBar().showMessage(f"{name} loaded", 5000)
        if synthetic:
            self._show_banner(
                f"{name} is a synthetic model with random weights: its output is meaningless. "
                "Install a real one with `loupe models pull smolvlm-256m`.",
                "#b26a00",
            )

    def _model_name(self) -> str:
        """The model picked now (the evaluation loads its own copy)."""
        picked = self.models.current() if self.models is not None else ""
        return picked or self.loaded_model

    def _model_failed(self, message: str) -> None:
        self.model_label.setText("No model")
        self.drop.setEnabled(False)  # nothing could analyze what is dropped now
        self._show_banner(f"The model could not be loaded: {message}", "#c62828")

    def _item_finished(
        self, batch: int, index: int, result_id: int, result: Result, cached: bool, steps: list[dict[str, object]]
    ) -> None:
        threshold = self._tasks[batch].options.review_threshold
        self._result_ids[self.bridge.batches[batch].paths[index]] = result_id  # before the row can be shown
        self.queue.mark_finished(batch, index, result, threshold, cached, steps)
        QTimer.singleShot(0, lambda: self._add_for_review(result_id))  # its own event-loop turn: no long stall

    def _add_for_review(self, result_id: int) -> None:
        if self._closed:  # queued before the window closed; the store may be gone (it is in the store already)
            return
        if self.review.add_result(result_id):  # only this result is read, never the whole queue again
            self._update_review_tab()

    def _show_result(self, path: str, result: Result, steps: list[dict[str, object]]) -> None:
        task = next((t for t in self._tasks.values() if t.name == result.task), None)
        threshold = task.options.review_threshold if task else 0.5
        self.result_view.show_result(path, result, threshold, steps, result_id=self._result_ids.get(path))
        self._shown_token = self.decoder.request(path)

    # -- search ------------------------------------------------------------------------------------------
    def find_similar(self, result_id: int) -> Background:
        """The Search tab, with the stored results most like this result's picture."""
        self.tabs.setCurrentWidget(self.search)
        return self.search.find_similar(result_id)

    def show_duplicates(self, result_id: int | None = None) -> Background:
        """The Search tab, with the groups of near-duplicates (this result's group first)."""
        self.tabs.setCurrentWidget(self.search)
        return self.search.show_duplicates(result_id)

    def open_stored(self, result_id: int) -> None:
        """Show a stored result (a search row double-clicked) in the Analyze tab's result view."""
        stored = self.store.result(result_id)
        steps = [dict(s) for s in stored.escalation if isinstance(s, dict)]
        self.tabs.setCurrentIndex(0)
        self.result_view.show_result(stored.path, stored.result, 0.5, steps, result_id=result_id)
        self._shown_token = self.decoder.request(stored.path)

    def _review_showing(self, path: str) -> None:
        self._review_token = self.decoder.request(path)

    def _image_decoded(self, token: int, image: QImage) -> None:
        if token == self._shown_token:
            self.result_view.set_image(image)
        elif token == self._review_token:
            self.review.set_image(image)

    def _show_banner(self, text: str, color: str) -> None:
        self.banner.setText(text)
        self.banner.setStyleSheet(_BANNER.format(color))
        self.banner.show()

    def _update_review_tab(self) -> None:
        n = len(self.review.items)
        self.tabs.setTabText(1, f"Review ({n})" if n else "Review")

    # -- closing -----------------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        unfinished = self.queue.unfinished()
        if unfinished and not self.confirm_stop(self, unfinished):
            event.ignore()
            return
        if self.settings is not None:
            self.settings.setValue("geometry", self.saveGeometry())
            self.settings.setValue("task", self.tasks.task.name)
            save_settings(self.settings, self.app_settings)
            self.settings.sync()
        self.statusBar().showMessage("Stopping…")
        if self.models is not None and self.models.dialog is not None:
            self.models.dialog.done(0)  # cancels a download in progress and waits for it
        self.bridge.stop()
        self.decoder.wait()
        self.queue.thumbnails.wait()
        self._export_pool.waitForDone()
        self.evaluate.shutdown()
        self.search.shutdown()
        self._closed = True
        event.accept()
