"""Fixtures for driving the real desktop window offscreen, with the real engine on a tiny synthetic model."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from loupe.api import Engine
from loupe.desktop.bridge import EngineBridge
from loupe.desktop.main_window import MainWindow
from loupe.desktop.runner import LoadedModel
from loupe.models.synthetic import SyntheticModel
from loupe.store import Store

from tests.engine.fake_hub import hub  # noqa: F401  (a fixture for the Models dialog tests)
from tests.noise import write_noise_pngs


def tiny_loader(model: SyntheticModel) -> Callable[[], LoadedModel]:
    """Loads the tiny synthetic SmolVLM through the real llama.cpp backend, one thread."""

    def load() -> LoadedModel:
        from loupe.backends.llama_cpp import LlamaCppBackend

        backend = LlamaCppBackend(model.text_path, model.mmproj_path, model_id="tiny-smolvlm", n_threads=1)
        return LoadedModel(Engine(backend, model="tiny-smolvlm"), "tiny-smolvlm", synthetic=True)

    return load


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Distinct small PNGs (different bytes, so none is answered from the cache)."""
    return write_noise_pngs(folder, count, seed=seed, size=lambda i: (120, 90 + 10 * i), name=f"shot-{seed}-{{i}}.png")


class Harness:
    """The window under test, its store, and what the close dialog was asked."""

    def __init__(self, window: MainWindow, store: Store, db: Path) -> None:
        self.window, self.store, self.db = window, store, db
        self.close_questions: list[int] = []


@pytest.fixture
def app_window(qtbot, tiny_models: dict[str, SyntheticModel], tmp_path: Path) -> Iterator[Harness]:
    """A shown main window with its model loading on the worker thread; closed and checked for leftovers after."""
    db = tmp_path / "loupe.db"
    store = Store(db)
    bridge = EngineBridge(tiny_loader(tiny_models["smolvlm"]), db)
    harness: Harness

    def confirm(_parent: object, unfinished: int) -> bool:
        harness.close_questions.append(unfinished)
        return True

    window = MainWindow(bridge, store, confirm_stop=confirm)
    harness = Harness(window, store, db)
    qtbot.addWidget(window)
    window.show()
    bridge.start()
    yield harness
    window.close()
    store.close()
    leftovers = [t.name for t in threading.enumerate() if t.name.startswith("loupe-")]
    assert not leftovers, f"threads left running: {leftovers}"
