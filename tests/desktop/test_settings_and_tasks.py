"""Settings (the API key goes to the keyring, never the settings file), the privacy indicator, and the task editor."""

from __future__ import annotations

from pathlib import Path

from loupe.core.tasks import builtin_task
from loupe.desktop.main_window import LOCAL_ONLY
from loupe.desktop.settings import AppSettings, CloudSettings, load_settings, save_settings
from loupe.desktop.widgets.settings_dialog import SettingsDialog
from loupe.desktop.widgets.task_editor import TaskEditor
from loupe.desktop.widgets.task_picker import TaskPicker
from PySide6.QtCore import QSettings

SECRET = "sk-test-0123456789abcdef"
CLOUD_TASK = """name: gauge-cloud
instructions: Read the gauge.
schema: {type: object, properties: {v: {type: number}}, required: [v]}
escalation: {ladder: ["local@low", "cloud@high"], cloud: true}
"""


class MemoryRing:
    """A keyring in memory: the OS keyring has no usable backend on a headless test machine (a documented fake)."""

    def __init__(self) -> None:
        self.saved: dict[tuple[str, str], str] = {}

    def get_password(self, service_name: str, username: str) -> str | None:
        return self.saved.get((service_name, username))

    def set_password(self, service_name: str, username: str, password: str) -> None:
        self.saved[(service_name, username)] = password


def test_settings_dialog_stores_the_key_in_the_keyring_and_never_in_the_settings_file(qtbot, tmp_path: Path) -> None:
    ini = tmp_path / "loupe.ini"
    ring = MemoryRing()
    dialog = SettingsDialog(AppSettings(), ring=ring)
    qtbot.addWidget(dialog)
    assert "no key stored" in dialog.key_state.text()
    dialog.threads.setValue(3)
    dialog.threshold.setValue(0.7)
    dialog.default_task.setCurrentText("receipt")
    dialog.cloud_enabled.setChecked(True)
    dialog.preset.setCurrentText("ollama")
    dialog.base_url.setText("http://127.0.0.1:9/v1")
    dialog.cloud_model.setText("qwen")
    dialog.api_key.setText(SECRET)
    dialog.accept()
    assert ring.saved == {("loupe", "ollama"): SECRET}
    chosen = dialog.settings()
    store = QSettings(str(ini), QSettings.Format.IniFormat)
    save_settings(store, chosen)
    store.sync()
    assert SECRET not in ini.read_text()
    again = load_settings(QSettings(str(ini), QSettings.Format.IniFormat))
    assert (
        again
        == chosen
        == AppSettings(
            threads=3,
            default_task="receipt",
            review_threshold=0.7,
            cloud=CloudSettings(True, "ollama", "http://127.0.0.1:9/v1", "qwen"),
        )
    )
    reopened = SettingsDialog(again, ring=ring)
    qtbot.addWidget(reopened)
    assert "a key is stored" in reopened.key_state.text() and reopened.api_key.text() == ""


def test_a_broken_keyring_is_reported_and_the_dialog_stays_open(qtbot) -> None:
    class Locked(MemoryRing):
        def set_password(self, service_name: str, username: str, password: str) -> None:
            raise RuntimeError("the keyring is locked")

    dialog = SettingsDialog(AppSettings(), ring=Locked())
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.api_key.setText(SECRET)
    dialog.accept()
    assert (
        dialog.isVisible()
        and "the keyring is locked" in dialog.error.text()
        and "$OPENAI_API_KEY" in dialog.error.text()
    )


def test_privacy_indicator_follows_the_task_and_the_settings(qtbot, tmp_path: Path) -> None:
    from loupe.desktop.bridge import EngineBridge
    from loupe.desktop.main_window import MainWindow
    from loupe.store import Store

    task_file = tmp_path / "gauge.yaml"
    task_file.write_text(CLOUD_TASK)
    with Store(tmp_path / "x.db") as store:
        window = MainWindow(
            EngineBridge(lambda: None, tmp_path / "x.db"),
            store,  # type: ignore[arg-type]
            settings=QSettings(str(tmp_path / "w.ini"), QSettings.Format.IniFormat),
            ring=MemoryRing(),
        )
        qtbot.addWidget(window)
        assert window.privacy.text() == LOCAL_ONLY
        assert window.tasks.add_file(str(task_file))
        assert window.privacy.text() == LOCAL_ONLY  # the task allows the cloud, the settings do not
        window.apply_settings(AppSettings(cloud=CloudSettings(enabled=True, preset="ollama")))
        assert window.privacy.text() == "May send images to http://127.0.0.1:11434/v1"
        window.tasks.combo.setCurrentText("defects")  # a built-in task has no cloud step
        assert window.privacy.text() == LOCAL_ONLY
        window.apply_settings(AppSettings(default_task="receipt"))
        assert window.tasks.task.name == "receipt"  # a new default task is selected at once
        window.close()


def test_task_editor_shows_problems_at_their_field_and_saves_a_task_file(qtbot, tmp_path: Path) -> None:
    picker = TaskPicker("defects")
    qtbot.addWidget(picker)
    editor = picker.copy_task()
    save = editor.buttons.button(editor.buttons.StandardButton.Save)
    assert editor.task is not None and save.isEnabled()  # starts from the selected task
    assert editor.name.text() == "defects-copy"
    editor.schema.setPlainText('{"type": "object", "properties": {"n": {"type": "nmber"}}}')
    assert "at /properties/n/type" in editor.errors["schema"].text() and not save.isEnabled()
    assert editor.errors["instructions"].isHidden()
    editor.schema.setPlainText('{"type": "object",')
    assert editor.errors["schema"].text().startswith("not JSON")
    editor.schema.setPlainText('{"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]}')
    editor.instructions.setPlainText("   ")
    assert "instructions" in editor.errors["instructions"].text() and editor.errors["schema"].isHidden()
    editor.instructions.setPlainText("Count the bolts.")
    editor.name.setText("bolts")
    assert editor.check() == {} and save.isEnabled()
    editor.escalation.ladder.setText("local@low, local@sideways")
    assert "sideways" in editor.errors["escalation"].text() and not save.isEnabled()
    editor.escalation.ladder.setText("local@low, cloud@high")
    editor.escalation.cloud.setChecked(True)
    editor.escalation.max_calls.setValue(20)
    assert editor.check() == {} and save.isEnabled()
    editor.save_to(tmp_path / "bolts.yaml")
    assert picker.task.name == "bolts" and picker.task.schema["required"] == ["n"]
    assert picker.task.options.max_tokens == builtin_task("defects").options.max_tokens  # options kept
    assert picker.task.escalation == {
        "ladder": ["local@low", "cloud@high"],
        "thresholds": {"overall": 0.5},
        "cloud": True,
        "budget": {"max_calls_per_job": 20},
    }
    assert "Count the bolts." in (tmp_path / "bolts.yaml").read_text()


def test_editor_refuses_to_save_while_invalid(qtbot, tmp_path: Path) -> None:
    editor = TaskEditor()
    qtbot.addWidget(editor)
    editor.schema.setPlainText("[]")
    try:
        editor.save_to(tmp_path / "x.yaml")
    except ValueError as exc:
        assert "problems" in str(exc)
    else:
        raise AssertionError("an invalid task was saved")
    assert not (tmp_path / "x.yaml").exists()
