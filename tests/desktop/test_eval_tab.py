"""The Evaluate tab inside the real window: the picked task and model evaluated off the GUI thread, report shown."""

from __future__ import annotations

import json
from pathlib import Path

from loupe.core.tasks import Task, builtin_task
from loupe.desktop.eval_tab import eval_tab
from loupe.models.synthetic import SyntheticModel
from PySide6.QtCore import Qt

from tests.desktop.conftest import tiny_loader, write_images


def test_window_has_an_evaluate_tab(app_window) -> None:
    tabs = app_window.window.tabs
    assert [tabs.tabText(i).split(" (")[0] for i in range(tabs.count())] == ["Analyze", "Review", "Evaluate", "Search"]
    assert app_window.window.evaluate.run_button.isEnabled() is False  # the fixture's window has no model loader


def test_evaluate_tab_runs_the_picked_task_and_model(
    qtbot, tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    images = write_images(tmp_path / "set" / "images", 2, seed=3)
    labels = tmp_path / "set" / "labels.jsonl"
    label = {"caption": "a photo", "tags": ["photo"]}
    labels.write_text("".join(json.dumps({"image": f"images/{p.name}", "data": label}) + "\n" for p in images))
    task: Task = builtin_task("describe")
    asked: list[str] = []

    def make_loader(name: str):
        asked.append(name)
        return tiny_loader(tiny_models["smolvlm"])

    view = eval_tab(
        tmp_path / "loupe.db", lambda: task, lambda: "tiny-smolvlm", make_loader, out_root=tmp_path / "reports"
    )
    qtbot.addWidget(view)
    view.path.setText(str(labels))
    with qtbot.waitSignal(view.reportShown, timeout=60_000) as shown:
        qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    folder = Path(shown.args[0])
    assert folder.parent == tmp_path / "reports"
    doc = json.loads((folder / "report.json").read_text())
    assert doc["task"] == "describe" and doc["images"] == 2
    assert [s["system"] for s in doc["systems"]] == ["tiny-smolvlm"] and asked == ["tiny-smolvlm"]
    assert "Loupe evaluation: describe" in view.browser.toPlainText()
    view.shutdown()
