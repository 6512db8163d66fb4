"""Choosing another model in the window: refused while busy, else reloaded, used next, and remembered.

While the queue is busy the choice is refused; otherwise the worker reloads the model, the next images run on it, and
the choice is remembered for the next start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from loupe.api import Engine
from loupe.desktop.bridge import EngineBridge
from loupe.desktop.main_window import MainWindow
from loupe.desktop.runner import LoadedModel
from loupe.desktop.settings import load_settings
from loupe.models.store import ModelStore
from loupe.models.synthetic import SyntheticModel
from loupe.store import Store
from PySide6.QtCore import QSettings

from tests.desktop.conftest import write_images


def loader(model: SyntheticModel) -> Callable[[], LoadedModel]:
    def load() -> LoadedModel:
        from loupe.backends.llama_cpp import LlamaCppBackend

        backend = LlamaCppBackend(model.text_path, model.mmproj_path, model_id=model.name, n_threads=1)
        return LoadedModel(Engine(backend, model=model.name), model.name, synthetic=True)

    return load


def test_switching_models_reloads_the_worker_and_is_remembered(
    qtbot, tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    by_name = {m.name: m for m in tiny_models.values()}
    ini = tmp_path / "loupe.ini"
    with Store(tmp_path / "loupe.db") as store:
        bridge = EngineBridge(loader(tiny_models["smolvlm"]), tmp_path / "loupe.db")
        window = MainWindow(
            bridge,
            store,
            settings=QSettings(str(ini), QSettings.Format.IniFormat),
            model_store=ModelStore(tmp_path / "models"),
            make_loader=lambda name: loader(by_name[name]),
            model_name="tiny-smolvlm",
            confirm_stop=lambda *_: True,
        )
        qtbot.addWidget(window)
        window.show()
        with qtbot.waitSignal(bridge.modelLoaded, timeout=10000):
            bridge.start()
        assert window.models is not None and window.models.combo.currentText() == "tiny-smolvlm"

        window.queue.pause_button.click()
        window.enqueue([str(write_images(tmp_path / "a", 1, seed=20)[0])])
        assert not window.switch_model("tiny-gemma3")  # images are waiting: refused, said so
        assert "Finish or cancel" in window.statusBar().currentMessage()
        assert window.models.combo.currentText() == "tiny-smolvlm"
        window.queue.pause_button.click()
        qtbot.waitUntil(lambda: window.queue.unfinished() == 0, timeout=20000)

        with qtbot.waitSignal(bridge.modelLoaded, timeout=10000) as loaded:
            assert window.switch_model("tiny-gemma3")
        assert loaded.args == ["tiny-gemma3", True] and window.model_label.text() == "Ready: tiny-gemma3"
        window.enqueue([str(write_images(tmp_path / "b", 1, seed=21)[0])])
        qtbot.waitUntil(lambda: window.queue.unfinished() == 0, timeout=20000)
        assert [s.result.model for s in store.results()] == ["tiny-smolvlm", "tiny-gemma3"]
        window.close()
    assert load_settings(QSettings(str(ini), QSettings.Format.IniFormat)).model == "tiny-gemma3"
