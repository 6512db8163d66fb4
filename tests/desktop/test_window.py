"""The desktop window driven as a user would: drop images, watch the queue, read results, review, close."""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path
from typing import Any

from loupe.api import Engine
from loupe.core.confidence import format_confidence
from loupe.core.images.boxes import invalid_boxes
from loupe.core.types import Box
from loupe.desktop.widgets.queue_view import DONE, ERROR, REVIEW, WAITING
from loupe.desktop.widgets.result_view import LOW_MARK
from loupe.desktop.widgets.task_picker import TaskPicker
from loupe.store import ReviewQueue
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from tests.desktop.conftest import Harness, write_images


def drop(widget, paths: list[Path]) -> None:
    """A drag entering the widget, then the drop, both carrying file URLs (Qt ignores a drop without the enter)."""
    mime = _mime(paths)
    with warnings.catch_warnings():  # PySide6 marks the only QDragEnterEvent constructor deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(
            QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        )
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(widget, event)


def rows(harness: Harness) -> list[tuple[str, str]]:
    tree = harness.window.queue.tree
    return [(tree.topLevelItem(i).text(0), tree.topLevelItem(i).text(1)) for i in range(tree.topLevelItemCount())]


def test_drop_files_and_folder_analyzed_with_boxes_drawn(
    app_window: Harness, tmp_path: Path, qtbot, monkeypatch
) -> None:
    w = app_window.window
    reloads: list[int] = []
    monkeypatch.setattr(w.review, "refresh", lambda: reloads.append(1))  # the review queue is never re-read whole
    two = write_images(tmp_path / "loose", 2, seed=1)
    folder = tmp_path / "folder"
    write_images(folder, 1, seed=2)
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    # The GUI thread never waits on the model: each analysis holds until the GUI's event loop has turned while it
    # is in hand (a timer tick). Were the analysis on the GUI thread, or the GUI thread blocked on it, no tick
    # could come and the wait would run out (no timing in the check: it is a yes/no).
    turned = threading.Event()
    analyses: list[tuple[bool, bool]] = []  # (on the GUI thread, the event loop turned meanwhile)
    real_analyze = Engine.analyze

    def analyze(self: Engine, *args: Any, **kwargs: Any) -> Any:
        turned.clear()
        analyses.append((threading.current_thread() is threading.main_thread(), turned.wait(30)))
        return real_analyze(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "analyze", analyze)
    timer = QTimer()
    timer.timeout.connect(turned.set)
    timer.start(10)

    drop(w.drop, [*two, folder, bad])
    assert [s for _, s in rows(app_window)] == [WAITING] * 4  # queued at once, before the model is even loaded
    qtbot.waitUntil(lambda: w.queue.unfinished() == 0, timeout=20000)
    timer.stop()

    states = dict(rows(app_window))
    assert states["broken.jpg"] == ERROR
    assert {states[p.name] for p in two} <= {DONE, REVIEW}
    assert states["shot-2-0.png"] in {DONE, REVIEW}
    assert w.queue.progress.value() == w.queue.progress.maximum() == 4
    assert analyses == [(False, True)] * 4  # every item, the broken file too (its error comes from the engine)

    w.queue.tree.setCurrentItem(w.queue.tree.topLevelItem(0))
    view = w.result_view
    result = view.result
    assert result is not None and result.status.value == "ok"
    assert "status <b>ok</b>" in view.status.text()
    tree_rows = view.tree.items()
    assert "/defects" in tree_rows and "/defects/0/label" in tree_rows
    assert json.loads(tree_rows["/defects/0/label"].text(1)) == result.data["defects"][0]["label"]
    shown = {p: c for p, c in result.confidence.items() if p in tree_rows}
    low_pointer = min(shown, key=shown.__getitem__)
    assert tree_rows[low_pointer].text(2).startswith(LOW_MARK)  # the synthetic model is never sure
    box_row = tree_rows["/defects/0/box_2d"]  # a box is one row: its four numbers and their lowest confidence
    assert json.loads(box_row.text(1)) == result.data["defects"][0]["box_2d"]
    assert box_row.text(2).endswith(
        format_confidence(min(result.confidence[f"/defects/0/box_2d/{i}"] for i in range(4)))
    )
    # the tiny random model answers box_2d [7, 0, 0, 0]: no area in pixels, so no box is drawn (no invisible box
    # with a floating label) and its numbers read confidence 0; the boxes that have an area are drawn where they are
    sizes = {i.id: (i.width, i.height) for i in result.images}
    flat = invalid_boxes(result.data, sizes)
    assert flat and len(flat) + len(result.boxes) == len(result.data["defects"])
    assert all(result.confidence[f"{b.pointer}/{i}"] == 0.0 for b in flat for i in range(4))
    assert len(view.canvas.box_items) == len(result.boxes)
    qtbot.waitUntil(lambda: any(i.type() == 7 for i in view.canvas.scene().items()), timeout=5000)  # the picture
    (w_, h_) = next(iter(sizes.values()))
    drawn = (
        *result.boxes,
        Box("/d/0/box_2d", "dent", (100, 200, 500, 600), (w_ // 5, h_ // 10, w_ // 2, h_ // 2), "x"),
    )
    view.canvas.show_boxes(drawn, None)
    assert len(view.canvas.box_items) == len(drawn)
    for item, box in zip(view.canvas.box_items, drawn, strict=True):
        r = item.rect()
        assert (r.left(), r.top(), r.right(), r.bottom()) == tuple(float(v) for v in box.pixels)
    view.raw_button.click()
    assert view.raw.isVisible() and view.raw.toPlainText() == result.raw

    w.queue.tree.setCurrentItem(w.queue.tree.topLevelItem(3))
    assert view.result is not None and view.result.status.value == "error"
    assert "status <b>error</b>" in view.status.text() and "broken.jpg" in view.status.text()

    stored = app_window.store.results()
    assert len(stored) == 4 and {Path(s.path).name for s in stored} == {n for n, _ in rows(app_window)}

    # the review tab lists exactly the doubtful ones (the error first, then lowest confidence first) ...
    panel = w.review
    assert reloads == []  # each result was inserted on its own
    doubtful = {n for n, s in rows(app_window) if s in (REVIEW, ERROR)}
    qtbot.waitUntil(lambda: len(panel.items) == len(doubtful), timeout=5000)  # each added in its own turn
    assert {Path(s.path).name for s in panel.items} == doubtful and w.tabs.tabText(1) == f"Review ({len(doubtful)})"
    assert panel.items[0].result.status.value == "error"
    w.tabs.setCurrentWidget(panel)
    w.activateWindow()
    panel.list.setFocus()
    panel.list.setCurrentRow(0)
    qtbot.keyClick(panel.list, Qt.Key.Key_Down)  # arrows move through the queue
    low = panel.current
    assert low is not None and panel.list.currentRow() == 1 and low.result.status.value == "ok"
    # ... an invalid edit is refused, a valid one stored
    panel.editor.setPlainText('{"defects": [{"label": 5}]}')
    assert "/defects/0" in panel.message.text()  # checked as you type
    panel.save_edit()
    assert "refused" in panel.message.text() and app_window.store.result(low.id).review is None
    panel.editor.setPlainText('{"defects": []}')
    panel.save_edit()
    assert app_window.store.result(low.id).final_data == {"defects": []}
    assert low.id not in [s.id for s in panel.items] and "1 done this session" in panel.progress.text()

    qtbot.waitUntil(lambda: len(w.job_ids) == 1, timeout=5000)
    out = tmp_path / "export" / "results.jsonl"
    w.export_to("jsonl", out)  # as File > Export results as JSONL… does after its dialog
    qtbot.waitUntil(lambda: w.statusBar().currentMessage().startswith("Exported: 4 result(s)"), timeout=5000)
    assert not w.exports
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4 and {Path(line["path"]).name for line in lines} == set(states)


def test_pasted_files_are_queued_and_review_tab_refuses_invalid_edit_stores_valid_one_accepts_with_a(
    app_window: Harness, tmp_path: Path, qtbot
) -> None:
    w = app_window.window
    QApplication.clipboard().setMimeData(_mime(write_images(tmp_path, 2, seed=3)))
    w.paste()
    QApplication.clipboard().clear()  # the clipboard owns the QMimeData: let it go now, not at interpreter exit
    assert len(rows(app_window)) == 2
    qtbot.waitUntil(lambda: w.queue.unfinished() == 0, timeout=20000)
    panel = w.review
    qtbot.waitUntil(lambda: len(panel.items) == 2, timeout=5000)
    assert w.tabs.tabText(1) == "Review (2)"
    lows = [s.result.min_confidence for s in panel.items]
    assert lows == sorted(lows)
    w.tabs.setCurrentWidget(panel)

    first = panel.current
    assert first is not None
    assert len(panel.canvas.box_items) == len(first.result.boxes)  # the picture with its boxes, beside the data
    assert first.result.min_confidence == 0.0 and first.result.data["defects"]  # [7, 0, 0, 0]: flagged, not drawn
    qtbot.waitUntil(lambda: any(i.type() == 7 for i in panel.canvas.scene().items()), timeout=5000)
    panel.editor.setPlainText('{"defects": "none"}')
    assert "/defects" in panel.message.text()  # checked as you type
    panel.refresh()  # as when another result arrives: the edit in progress is kept
    assert panel.editor.toPlainText() == '{"defects": "none"}'
    panel.save_edit()
    assert "refused" in panel.message.text()
    assert app_window.store.result(first.id).review is None

    panel.editor.setPlainText('{"defects": []}')
    panel.save_edit()
    assert app_window.store.result(first.id).review.decision == "edit"
    assert app_window.store.result(first.id).final_data == {"defects": []}
    assert len(panel.items) == 1 and w.tabs.tabText(1) == "Review (1)"

    second = panel.current
    assert second is not None
    w.activateWindow()
    panel.list.setFocus()
    qtbot.keyClick(panel.list, Qt.Key.Key_A)
    assert app_window.store.result(second.id).review.decision == "accept"
    assert panel.items == [] and ReviewQueue(app_window.store).pending() == []

    qtbot.waitUntil(lambda: len(w.job_ids) == 1, timeout=5000)
    w.export_to("labelled", tmp_path / "labelled")
    qtbot.waitUntil(lambda: w.statusBar().currentMessage().startswith("Exported: 2 labelled"), timeout=5000)
    labels = [json.loads(line) for line in (tmp_path / "labelled" / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 2 and {"defects": []} in [label.get("data") for label in labels]


def test_closing_while_busy_asks_then_stops_cleanly(app_window: Harness, tmp_path: Path, qtbot) -> None:
    w = app_window.window
    w.drop_mime(_mime(write_images(tmp_path, 6, seed=4)))
    qtbot.waitUntil(lambda: any(s == "running" for _, s in rows(app_window)), timeout=10000)
    assert w.close()
    assert app_window.close_questions and app_window.close_questions[0] >= 1
    assert not w.bridge.runner._thread.is_alive()
    done = len(app_window.store.results())
    assert done < 6  # stopped early; what finished is stored, the rest stays pending in the job
    job = app_window.store.latest_job()
    assert len(app_window.store.items(job.id, pending_only=True)) == 6 - done


def test_model_failure_is_shown_in_the_window(qtbot, tmp_path: Path) -> None:
    from loupe.desktop.bridge import EngineBridge
    from loupe.desktop.main_window import MainWindow
    from loupe.store import Store

    def broken() -> object:
        raise FileNotFoundError("model.gguf is missing")

    with Store(tmp_path / "x.db") as store:
        bridge = EngineBridge(broken, tmp_path / "x.db")  # type: ignore[arg-type]
        window = MainWindow(bridge, store)
        qtbot.addWidget(window)
        window.show()
        with qtbot.waitSignal(bridge.modelFailed, timeout=5000):
            bridge.start()
        assert window.banner.isVisible() and "model.gguf is missing" in window.banner.text()
        window.close()


def test_task_picker_lists_builtins_and_refuses_a_bad_task_file(qtbot, tmp_path: Path) -> None:
    picker = TaskPicker("receipt")
    qtbot.addWidget(picker)
    assert picker.task.name == "receipt"
    assert {picker.combo.itemText(i) for i in range(picker.combo.count())} >= {"defects", "describe", "product"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("instructions: x\n")
    with qtbot.waitSignal(picker.problem, timeout=1000) as seen:
        assert not picker.add_file(str(bad))
    assert "schema" in seen.args[0]
    good = tmp_path / "gauge.yaml"
    good.write_text("instructions: Read it.\nschema: {type: object, properties: {v: {type: number}}}\n")
    assert picker.add_file(str(good)) and picker.task.name == "gauge"


def _mime(paths: list[Path]) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def test_last_task_and_geometry_persist_between_runs(qtbot, tmp_path: Path) -> None:
    from loupe.desktop.bridge import EngineBridge
    from loupe.desktop.main_window import MainWindow
    from loupe.store import Store
    from PySide6.QtCore import QSettings

    def never() -> object:
        raise AssertionError("not started")

    settings = QSettings(str(tmp_path / "loupe.ini"), QSettings.Format.IniFormat)
    with Store(tmp_path / "x.db") as store:
        first = MainWindow(EngineBridge(never, tmp_path / "x.db"), store, settings=settings)  # type: ignore[arg-type]
        qtbot.addWidget(first)
        assert first.tasks.task.name == "defects"
        first.tasks.combo.setCurrentText("receipt")
        first.resize(first.minimumSizeHint().width() + 137, first.minimumSizeHint().height() + 91)
        expected = (first.width(), first.height())  # what the window really took (fonts vary by machine)
        first.close()
        again = MainWindow(
            EngineBridge(never, tmp_path / "x.db"),
            store,  # type: ignore[arg-type]
            settings=QSettings(str(tmp_path / "loupe.ini"), QSettings.Format.IniFormat),
        )
        qtbot.addWidget(again)
        assert again.tasks.task.name == "receipt"
        assert (again.width(), again.height()) == expected
        again.close()


def test_a_pasted_picture_is_saved_and_queued(app_window: Harness, qtbot) -> None:
    from PySide6.QtGui import QColor, QImage

    w = app_window.window
    picture = QImage(80, 60, QImage.Format.Format_RGB32)
    picture.fill(QColor("#8899aa"))
    QApplication.clipboard().setImage(picture)
    task = w.paste()
    assert task is not None
    qtbot.waitUntil(lambda: len(rows(app_window)) == 1, timeout=5000)
    QApplication.clipboard().clear()
    name, _ = rows(app_window)[0]
    saved = app_window.db.parent / "pasted" / name
    assert name.startswith("pasted-") and saved.is_file()
    qtbot.waitUntil(lambda: w.queue.unfinished() == 0, timeout=20000)
    assert [Path(s.path).name for s in app_window.store.results()] == [name]
