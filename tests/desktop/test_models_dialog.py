"""The models dialog against a real (fake-Hub) HTTP server on 127.0.0.1: download, cancel, failure, import.

Download with progress, cancel and resume, a failing download shown plainly, and import of local GGUF files.
"""

from __future__ import annotations

from pathlib import Path

from loupe.desktop.widgets.models_dialog import ModelPicker, ModelsDialog
from loupe.models.synthetic import SyntheticModel

from tests.engine.fake_hub import FakeHub, hub_store, publish


def test_download_shows_progress_and_installs_the_model(qtbot, hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path, text_sha=None, mmproj_sha=None)
    store = hub_store(hub, remote, tmp_path)
    dialog = ModelsDialog(store)
    qtbot.addWidget(dialog)
    dialog.select("tiny")
    assert dialog.download_button.isEnabled()
    seen: list[tuple[str, int, int]] = []
    download = dialog.start_download()
    assert download is not None and not dialog.download_button.isEnabled() and dialog.cancel_button.isEnabled()
    download.progress.connect(lambda *a: seen.append(a))
    with qtbot.waitSignal(dialog.changed, timeout=10000):
        pass
    assert "tiny is installed" in dialog.message.text()
    assert (remote.text_file, len(remote.text), len(remote.text)) in seen  # the last progress of the text file
    states = {
        dialog.tree.topLevelItem(i).data(0, 256): dialog.tree.topLevelItem(i).text(3)
        for i in range(dialog.tree.topLevelItemCount())
    }
    assert states["tiny"] == "installed"
    assert store.resolve("tiny").text_path.read_bytes() == remote.text


def test_canceled_download_keeps_nothing_broken_and_a_failing_one_says_why(
    qtbot,
    hub: FakeHub,
    tmp_path: Path,
) -> None:
    remote = publish(hub, tmp_path)
    store = hub_store(hub, remote, tmp_path)
    dialog = ModelsDialog(store)
    qtbot.addWidget(dialog)
    dialog.select("tiny")
    download = dialog.start_download()
    assert download is not None
    download.cancel()  # before the first chunk arrives: stopped at the first progress callback
    with qtbot.waitSignal(dialog.changed, timeout=10000):
        pass
    assert "canceled" in dialog.message.text()
    assert not (store.root / "tiny" / remote.text_file).exists()  # nothing half-done under the final name

    hub.fail = (500, {})
    dialog.select("tiny")
    with qtbot.waitSignal(dialog.changed, timeout=10000):
        dialog.start_download()
    text = dialog.message.text()
    assert text.startswith("Download failed:") and "HTTP 500" in text and "127.0.0.1" in text
    assert dialog.message.styleSheet() == "color: #c62828;"
    assert dialog.download is None and dialog.download_button.isEnabled()  # the user can try again


def test_import_local_files_and_refuse_a_non_gguf(
    qtbot, tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    from loupe.models.store import ModelStore

    store = ModelStore(tmp_path / "models")
    picker = ModelPicker(store, "")
    qtbot.addWidget(picker)
    dialog = picker.open_dialog()
    bad = tmp_path / "notes.gguf"
    bad.write_text("hello")
    tiny = tiny_models["smolvlm"]
    assert dialog.import_files(str(bad), str(tiny.mmproj_path)) is None
    assert dialog.message.text().startswith("Import refused:") and "notes.gguf" in dialog.message.text()
    name = dialog.import_files(str(tiny.text_path), str(tiny.mmproj_path), name="my-tiny")
    assert name == "my-tiny" and dialog.selected() == "my-tiny"
    assert "my-tiny" in [picker.combo.itemText(i) for i in range(picker.combo.count())]  # the picker refreshed
    dialog.close()
