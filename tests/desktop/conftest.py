"""Fixtures for driving the real desktop window offscreen, with the real engine on a tiny synthetic model."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from desktop.bridge import EngineBridge
from desktop.main_window import MainWindow
from desktop.runner import LoadedModel
from engine.api import Engine
from engine.store import Store
from models.synthetic import SyntheticModel


def tiny_loader(model: SyntheticModel) -> Callable[[], LoadedModel]:
    """Loads the tiny synthetic SmolVLM through the real llama.cpp backend, one thread."""

    def load() -> LoadedModel:
        from engine.backends.llama_cpp import LlamaCppBackend

        backend = LlamaCppBackend(model.text_path, model.mmproj_path, model_id="tiny-smolvlm", n_threads=1)
        return LoadedModel(Engine(backend, model="tiny-smolvlm"), "tiny-smolvlm", synthetic=True)

    return load


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Distinct small PNGs (different bytes, so none is answered from the cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        path = folder / f"shot-{seed}-{i}.png"
        Image.fromarray(rng.integers(0, 255, (90 + 10 * i, 120, 3), dtype=np.uint8)).save(path)
        out.append(path)
    return out


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
