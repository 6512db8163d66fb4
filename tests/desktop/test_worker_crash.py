"""The desktop window over a model process that dies on one picture: that row is an error naming the signal, the
window stays up and the rest of the queue is analyzed by a new model process.

The crash is real: SIGSEGV raised in the worker at the first generated token of the 120x90 picture (the test-only
hook of loupe.backends.worker_child).
"""

from __future__ import annotations

import threading
from pathlib import Path

from loupe.api import Engine
from loupe.backends.worker import WorkerBackend
from loupe.backends.worker_child import FAULT_ENV
from loupe.desktop.bridge import EngineBridge
from loupe.desktop.main_window import MainWindow
from loupe.desktop.runner import LoadedModel
from loupe.desktop.widgets.queue_view import DONE, ERROR, REVIEW
from loupe.store import Store

from tests.desktop.conftest import Harness, write_images
from tests.desktop.test_window import drop, rows


def test_a_crash_in_the_model_process_is_one_error_row_and_the_queue_goes_on(
    qtbot, tiny_models, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, "decode:SIGSEGV@120x90")
    model = tiny_models["smolvlm"]
    backends: list[WorkerBackend] = []

    def load() -> LoadedModel:
        backends.append(WorkerBackend(model.text_path, model.mmproj_path, model_id="tiny-smolvlm", n_threads=1))
        return LoadedModel(Engine(backends[-1], model="tiny-smolvlm"), "tiny-smolvlm", synthetic=True)

    store = Store(tmp_path / "loupe.db")
    bridge = EngineBridge(load, tmp_path / "loupe.db")
    window = MainWindow(bridge, store, confirm_stop=lambda _parent, _n: True)
    qtbot.addWidget(window)
    window.show()
    bridge.start()
    try:
        shots = write_images(tmp_path / "shots", 3)  # 120x90 (the poison), 120x100, 120x110
        drop(window.drop, shots)
        qtbot.waitUntil(lambda: window.queue.unfinished() == 0, timeout=30000)
        states = dict(rows(Harness(window, store, tmp_path / "loupe.db")))
        assert states[shots[0].name] == ERROR
        assert {states[p.name] for p in shots[1:]} <= {DONE, REVIEW}
        window.queue.tree.setCurrentItem(window.queue.tree.topLevelItem(0))
        shown = window.result_view.result
        assert shown is not None and "the model process crashed (SIGSEGV)" in (shown.error or "")
        assert window.isVisible() and backends[0].restarts == 1
    finally:
        window.close()
        store.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("loupe-")]
    assert backends[0].pid is None  # the model process ended with the window
