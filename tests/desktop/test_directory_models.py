"""ONNX / MLX directory models in the window: listed with their format, pulled, chosen, run; prefetch of the next image.

The Hub is tests/engine/fake_hub.py on 127.0.0.1 serving the committed tiny SmolVLM (tests/backends/tiny) as an
ONNX catalog entry; the model runs on the real ONNX Runtime (CPU execution provider). Nothing touches the network.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
from loupe.core.images.load import LoadedImage, load_image
from loupe.core.prefetch import Prefetcher
from loupe.desktop.bridge import EngineBridge
from loupe.desktop.loading import store_loader
from loupe.desktop.main_window import MainWindow
from loupe.desktop.widgets.queue_view import DONE, REVIEW
from loupe.models.store import ModelStore
from loupe.models.synthetic import SyntheticModel
from loupe.store import Store

from tests.desktop.conftest import tiny_loader, write_images
from tests.engine.fake_hub import FakeHub
from tests.engine.test_models_dirs import publish_dir


def _open_window(
    qtbot, store: ModelStore, tiny: SyntheticModel, db: Path, prefetcher=Prefetcher
) -> tuple[MainWindow, EngineBridge]:
    """The window on the tiny GGUF model first; models picked in it load from `store` with one thread."""
    bridge = EngineBridge(tiny_loader(tiny), db, prefetcher=prefetcher)
    window = MainWindow(
        bridge,
        Store(db),
        model_store=store,
        make_loader=lambda name: store_loader(store, name, 1),
        model_name="tiny-smolvlm",
        confirm_stop=lambda *_: True,
    )
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(bridge.modelLoaded, timeout=15000):
        bridge.start()
    return window, bridge


def _combo(window: MainWindow) -> dict[str, tuple[str, bool]]:
    """The picker's entries: name -> (label, enabled)."""
    assert window.models is not None
    combo = window.models.combo
    items = combo.model()
    return {combo.itemData(i): (combo.itemText(i), items.item(i).isEnabled()) for i in range(combo.count())}


def _choose(qtbot, window: MainWindow, name: str) -> None:
    """Pick `name` in the combo as a user does (activated), which loads it on the worker."""
    assert window.models is not None
    combo = window.models.combo
    combo.setCurrentIndex(combo.findData(name))
    combo.activated.emit(combo.currentIndex())


def test_pull_choose_and_run_an_onnx_model_with_the_next_image_read_ahead(
    qtbot,
    hub: FakeHub,
    tiny_models: dict[str, SyntheticModel],
    tmp_path: Path,
) -> None:
    pytest.importorskip("onnxruntime")
    store, _wanted = publish_dir(hub, tmp_path)
    decoded: list[tuple[str, str, float]] = []  # (file, thread, when) of every image the prefetcher decoded

    def load(path: str) -> LoadedImage:
        decoded.append((Path(path).name, threading.current_thread().name, time.monotonic()))
        return load_image(path)

    window, bridge = _open_window(
        qtbot, store, tiny_models["smolvlm"], tmp_path / "loupe.db", prefetcher=lambda: Prefetcher(load)
    )
    assert _combo(window)["tiny-onnx"] == ("tiny-onnx (onnx, not downloaded)", False)  # listed, not yet usable

    assert window.models is not None
    dialog = window.models.open_dialog()
    rows = {
        dialog.tree.topLevelItem(i).data(0, 256): dialog.tree.topLevelItem(i)
        for i in range(dialog.tree.topLevelItemCount())
    }
    assert [rows["tiny-onnx"].text(c) for c in (1, 2, 3)] == ["onnx", "catalog", "missing"]
    assert rows["tiny"].text(1) == "gguf"
    dialog.select("tiny-onnx")
    assert dialog.download_button.isEnabled()
    progress: list[tuple[str, int, int]] = []
    with qtbot.waitSignal(dialog.changed, timeout=15000):
        download = dialog.start_download()
        assert download is not None
        download.progress.connect(lambda *a: progress.append(a))
    assert dialog.message.text() == "tiny-onnx is installed."
    assert any(f.endswith("_q4.onnx") and done == total > 0 for f, done, total in progress)
    assert store.directories.status("tiny-onnx").state == "installed"
    assert _combo(window)["tiny-onnx"] == ("tiny-onnx (onnx)", True)  # the picker refreshed: now it can be chosen
    dialog.close()

    with qtbot.waitSignal(bridge.modelLoaded, timeout=30000) as loaded:
        _choose(qtbot, window, "tiny-onnx")
    assert loaded.args == ["tiny-onnx", False] and window.model_label.text() == "Ready: tiny-onnx"
    assert type(bridge.runner.model.engine.backend).__name__ == "OnnxBackend"
    assert bridge.runner.model.engine.backend.provider == "CPUExecutionProvider"  # the desktop's default

    finished: dict[int, float] = {}
    bridge.itemFinished.connect(lambda _b, index, *_: finished.setdefault(index, time.monotonic()))
    first, second = write_images(tmp_path / "drop", 2, seed=50)
    window.tasks.combo.setCurrentText("describe")  # (the tiny random model takes the refusal branch of `defects`)
    window.enqueue([str(first), str(second)])
    qtbot.waitUntil(lambda: window.queue.unfinished() == 0, timeout=60000)

    tree = window.queue.tree
    assert [tree.topLevelItem(i).text(1) in {DONE, REVIEW} for i in range(2)] == [True, True]
    results = window.store.results()
    assert [Path(r.path).name for r in results] == [first.name, second.name]
    assert {r.result.model for r in results} == {"tiny-onnx"} and {r.result.status.value for r in results} == {"ok"}
    tree.setCurrentItem(tree.topLevelItem(1))
    view = window.result_view
    assert view.result is not None and view.result.model == "tiny-onnx" and "status <b>ok</b>" in view.status.text()
    shown = view.tree.items()
    assert {"/caption", "/tags"} <= set(shown) and json.loads(shown["/caption"].text(1)) == view.result.data["caption"]

    # The second image was decoded on the prefetch thread, before the first one had finished; the first was not
    # read ahead (nothing ran before it), so the engine decoded it itself.
    assert [(name, thread.startswith("loupe-prefetch")) for name, thread, _ in decoded] == [(second.name, True)]
    assert decoded[0][2] < finished[0]
    assert results[1].sha256 and results[1].sha256 == load_image(str(second)).sha256
    window.close()
    window.store.close()


def test_a_directory_model_whose_extra_is_missing_says_how_to_install_it(
    qtbot,
    hub: FakeHub,
    tiny_models: dict[str, SyntheticModel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as on a machine without the `onnx` extra
    store, _wanted = publish_dir(hub, tmp_path)
    store.directories.pull("tiny-onnx")  # pulling needs no extra; running does
    window, bridge = _open_window(qtbot, store, tiny_models["smolvlm"], tmp_path / "loupe.db")
    assert _combo(window)["tiny-onnx"] == ("tiny-onnx (onnx)", True)
    assert window.models is not None
    dialog = window.models.open_dialog()
    dialog.select("tiny-onnx")
    (row,) = dialog.tree.selectedItems()
    hint = "pip install 'loupe[onnx]'"
    assert hint in row.text(5) and row.text(3) == "installed"
    dialog.close()

    with qtbot.waitSignal(bridge.modelFailed, timeout=15000) as failed:
        _choose(qtbot, window, "tiny-onnx")
    assert "onnxruntime" in failed.args[0] and hint in failed.args[0]
    assert window.banner.isVisible() and hint in window.banner.text()
    assert window.model_label.text() == "No model"

    tiny = tiny_models["smolvlm"]
    store.import_local(tiny.text_path, tiny.mmproj_path, name="tiny-local")
    with qtbot.waitSignal(bridge.modelLoaded, timeout=15000):  # the window still works: go on with a GGUF model
        assert window.switch_model("tiny-local")
    assert window.model_label.text() == "Ready: tiny-local"
    window.close()
    window.store.close()


def test_a_directory_download_can_be_canceled_then_done(qtbot, hub: FakeHub, tmp_path: Path) -> None:
    from loupe.desktop.widgets.models_dialog import ModelsDialog

    store, wanted = publish_dir(hub, tmp_path)
    dialog = ModelsDialog(store)
    qtbot.addWidget(dialog)
    dialog.select("tiny-onnx")
    download = dialog.start_download()
    assert download is not None and dialog.cancel_button.isEnabled()
    download.cancel()  # before the first chunk arrives: stopped at the first progress callback
    with qtbot.waitSignal(dialog.changed, timeout=15000):
        pass
    assert "canceled" in dialog.message.text()
    assert store.directories.status("tiny-onnx").state == "missing"  # no manifest: never half-installed
    dialog.select("tiny-onnx")
    assert dialog.download_button.isEnabled()  # the user can start it again
    with qtbot.waitSignal(dialog.changed, timeout=15000):
        dialog.start_download()
    assert dialog.message.text() == "tiny-onnx is installed."
    directory = store.directories.status("tiny-onnx").path
    assert directory is not None and {rel: (directory / rel).read_bytes() for rel in wanted} == wanted


MLX_ENTRY = """
[models.tiny-mlx]
display_name = "Tiny MLX"
family = "smolvlm"
source = "huggingface"
format = "mlx"
repo_id = "test-org/Tiny-ONNX"
files = ["*.json", "*.jinja", "*.safetensors"]
license = "Apache-2.0"
note = "tiny"
"""


def test_an_mlx_entry_loads_through_the_mlx_backend(hub: FakeHub, tmp_path: Path) -> None:
    pytest.importorskip("mlx_vlm")
    from loupe.api import AnalyzeRequest
    from loupe.core.tasks import builtin_task
    from loupe.desktop.loading import load_from_store
    from loupe.models.catalog import load_catalog

    onnx_store, _wanted = publish_dir(hub, tmp_path)  # the same tiny model's files, safetensors included
    catalog = tmp_path / "catalog-mlx.toml"
    catalog.write_text((tmp_path / "catalog.toml").read_text() + MLX_ENTRY)
    store = ModelStore(
        onnx_store.root,
        catalog=load_catalog(catalog),
        endpoint=hub.endpoint,
        token=False,
        download_retries=0,
        retry_wait_s=0.0,
    )
    store.directories.pull("tiny-mlx")
    loaded = load_from_store(store, "tiny-mlx", 1)
    try:
        assert type(loaded.engine.backend).__name__ == "MlxVlmBackend" and loaded.name == "tiny-mlx"
        image = write_images(tmp_path / "mlx", 1, seed=70)[0]
        result = loaded.engine.analyze(AnalyzeRequest((str(image),), builtin_task("describe")))
        assert result.status.value == "ok" and set(result.data) == {"caption", "tags"}
    finally:
        loaded.engine.close()
