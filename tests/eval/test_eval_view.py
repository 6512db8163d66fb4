"""The Evaluate widget: a real evaluation (tiny model, real llama.cpp) started off the GUI thread, report shown."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import json
import threading
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from loupe.api import Engine
from loupe.core.tasks import load_task_file
from loupe.desktop.widgets.eval_view import EvalView
from loupe.eval.evaluate import Launcher
from loupe.eval.runner import System
from loupe.models.synthetic import SyntheticModel
from PySide6.QtCore import Qt


def _launcher(tiny_models: dict[str, SyntheticModel], task_file: Path, tmp_path: Path) -> Launcher:
    model = tiny_models["smolvlm"]

    def open_engine(name: str) -> Engine:
        from loupe.backends.llama_cpp import LlamaCppBackend

        return Engine(LlamaCppBackend(model.text_path, model.mmproj_path, model_id=name, n_threads=1), model=name)

    return Launcher(
        tmp_path / "loupe.db",
        load_task_file(task_file),
        [System.of_model("tiny")],
        open_engine,
        lambda name: {"backend": "llama_cpp", "model": name},
        tmp_path / "report",
        target=0.9,
    )


def test_evaluate_runs_off_the_gui_thread_and_shows_the_report(
    qtbot, tiny_models, digit_task_file, digit_set, tmp_path
):
    launcher = _launcher(tiny_models, digit_task_file, tmp_path)
    threads: list[threading.Thread] = []

    def start(path: str, stop: threading.Event) -> Path:
        threads.append(threading.current_thread())
        return launcher(path, stop)

    view = EvalView(start)
    qtbot.addWidget(view)
    view.path.setText(str(digit_set))
    with qtbot.waitSignal(view.reportShown, timeout=60_000) as shown:
        qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
        assert not view.run_button.isEnabled() and view.stop_button.isEnabled()
    assert shown.args == [str(tmp_path / "report")]
    assert threads and threads[0] is not threading.main_thread()
    doc = json.loads((tmp_path / "report" / "report.json").read_text())
    assert doc["systems"][0]["images"] == 3
    text = view.browser.toPlainText()
    assert "Loupe evaluation: digit" in text and "Thresholds for 90% accuracy" in text
    assert len(view.browser.images) >= 3 and all(not img.isNull() for img in view.browser.images.values())
    assert "plots" in view.status.text() and view.run_button.isEnabled()
    view.shutdown()


def test_a_failed_evaluation_is_said_plainly(qtbot, tiny_models, digit_task_file, tmp_path):
    view = EvalView(_launcher(tiny_models, digit_task_file, tmp_path))
    qtbot.addWidget(view)
    view.path.setText(str(tmp_path / "no-such-set"))
    with qtbot.waitSignal(view.failed, timeout=10_000) as failed:
        view.start()
    assert "no-such-set" in failed.args[0] and "Evaluation failed" in view.status.text()
    view.show_report(tmp_path / "nowhere")
    assert "No report in" in view.status.text()
    view.shutdown()
