"""Recent remembers dropped folders as folders (re-opening one picks up what is in it now), and changing the
model directory in Settings shows that directory's models in the picker and the open Models dialog at once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from loupe.desktop.bridge import EngineBridge
from loupe.desktop.main_window import MainWindow
from loupe.desktop.settings import load_settings
from loupe.models.store import ModelStore
from loupe.models.synthetic import SyntheticModel
from loupe.store import Store
from PySide6.QtCore import QMimeData, QSettings, QUrl

from tests.desktop.conftest import Harness, tiny_loader, write_images


def _names(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def test_recent_keeps_a_dropped_folder_as_a_folder(app_window: Harness, qtbot, tmp_path: Path) -> None:
    w = app_window.window
    folder = tmp_path / "shots"
    single = write_images(tmp_path / "loose", 1, seed=31)[0]
    write_images(folder, 2, seed=30)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder)), QUrl.fromLocalFile(str(single))])
    assert w.drop_mime(mime)
    assert w.queue.tree.topLevelItemCount() == 3  # the folder's two images and the loose one are queued
    assert w.app_settings.recent_files == (str(folder), str(single))
    assert [a.text() for a in w.recent_menu.actions()] == [str(folder), str(single)]
    qtbot.waitUntil(lambda: w.queue.unfinished() == 0, timeout=30000)

    write_images(folder, 3, seed=32)  # the folder has grown since: three more images
    w.recent_menu.actions()[0].trigger()
    assert w.queue.tree.topLevelItemCount() == 3 + 5  # everything in the folder now (the two old, three new)
    assert w.app_settings.recent_files == (str(folder), str(single))  # re-opened: first, not duplicated
    w.bridge.cancel_all()


def test_an_empty_folder_is_remembered_and_said_to_hold_no_images(app_window: Harness, tmp_path: Path) -> None:
    w = app_window.window
    empty = tmp_path / "empty"
    empty.mkdir()
    w.enqueue([str(empty)])
    assert w.queue.tree.topLevelItemCount() == 0 and w.statusBar().currentMessage() == f"No images in {empty}"
    assert w.app_settings.recent_files == (str(empty),)


def test_changing_the_model_directory_refreshes_the_picker_and_the_models_dialog(
    qtbot, tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    tiny = tiny_models["smolvlm"]
    other = tmp_path / "other-models"
    ModelStore(other).import_local(tiny.text_path, tiny.mmproj_path, name="my-tiny")
    ini = tmp_path / "loupe.ini"
    with Store(tmp_path / "loupe.db") as store:
        bridge = EngineBridge(tiny_loader(tiny), tmp_path / "loupe.db")  # never started: no model is needed here
        window = MainWindow(
            bridge,
            store,
            settings=QSettings(str(ini), QSettings.Format.IniFormat),
            model_store=ModelStore(tmp_path / "models"),
            model_name="tiny-smolvlm",
            confirm_stop=lambda *_: True,
        )
        qtbot.addWidget(window)
        window.show()
        assert window.models is not None and "my-tiny" not in _names(window.models.combo)
        dialog = window.models.open_dialog()
        listed = [dialog.tree.topLevelItem(i).data(0, 256) for i in range(dialog.tree.topLevelItemCount())]
        assert "my-tiny" not in listed

        window.apply_settings(replace(window.app_settings, model_dir=str(other)))
        assert window.models.store.root == other and "my-tiny" in _names(window.models.combo)
        assert window.models.combo.currentText() == "tiny-smolvlm"  # the model in use stays selected
        listed = [dialog.tree.topLevelItem(i).data(0, 256) for i in range(dialog.tree.topLevelItemCount())]
        assert "my-tiny" in listed and dialog.store is window.models.store
        dialog.close()
        window.close()
    assert load_settings(QSettings(str(ini), QSettings.Format.IniFormat)).model_dir == str(other)
