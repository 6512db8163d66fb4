"""The kiosk window driven with pytest-qt (offscreen): outcomes, counts, health, errors in place, PIN, restart."""

from __future__ import annotations

import os

from loupe import taskfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import threading
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from loupe.desktop.kiosk.app import build, parse_args
from loupe.desktop.kiosk.bridge import LineBridge, LineEventsAdapter
from loupe.desktop.kiosk.window import KioskWindow
from loupe.floor.line import Line
from loupe.floor.sources.base import FakeSource, SourceHealth
from loupe.models.synthetic import SyntheticModel
from PySide6.QtCore import Qt

from tests.floor.conftest import DEFECTS, defects_json, fake_engine, png_bytes, write_video


def no_line_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name in ("loupe-line", "loupe-outputs")]


def test_outcomes_counts_health_problems_and_the_pin(qtbot, tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        p = tmp_path / f"part-{i}.png"
        p.write_bytes(png_bytes(i, (160, 120)))
        paths.append(str(p))
    bridge = LineBridge()
    source = FakeSource()
    engine = fake_engine(defects_json(), defects_json(1, 4), defects_json(2, 3))
    line = Line(
        source=source,
        task=DEFECTS,
        rules=taskfile.parse(DEFECTS).rules,
        outputs=taskfile.parse(DEFECTS).outputs,
        db_path=tmp_path / "loupe.db",
        load=lambda: engine,
        model="fake",
        events=LineEventsAdapter(bridge),
    )
    left: list[bool] = []
    window = KioskWindow(
        bridge,
        task="defects",
        pin="4321",
        last_n=2,
        on_leave=lambda: left.append(line.stop()),
        outputs_health=lambda: "outputs: none",
    )
    qtbot.addWidget(window)
    window.show()
    line.start()
    qtbot.waitUntil(lambda: "ready" in window.model_health.text(), timeout=10000)
    with qtbot.waitSignal(bridge.outcome, timeout=10000):
        source.put(paths[0])
    assert window.verdict.text() == "PASS"
    for p in paths[1:]:
        source.put(p)
    qtbot.waitUntil(lambda: window.counts["FAIL"] == 2, timeout=10000)
    assert [window.count_labels[k].text() for k in ("PASS", "FAIL", "REVIEW")] == ["1", "2", "0"]
    assert window.verdict.text() == "FAIL" and "severity >= 3 (3)" in window.reason.text()
    assert window.recent.count() == 2 and "part-2.png" in window.recent.item(0).text()  # newest first, N kept
    qtbot.waitUntil(
        lambda: len(window.canvas.box_items) == 2 and len(window.canvas.scene().items()) > 4, timeout=10000
    )  # the two boxes over the decoded picture
    assert "source: ok" in window.source_health.text() and window.outputs_label.text() == "outputs: none"

    bridge.source_state(SourceHealth("reconnecting", "/mnt/line1 is not there; retrying in 2 s"))
    qtbot.waitUntil(window.problem.isVisible, timeout=5000)
    assert "line1 is not there" in window.problem.text() and "reconnecting" in window.source_health.text()
    bridge.source_state(SourceHealth("ok", "watching"))
    qtbot.waitUntil(lambda: not window.problem.isVisible(), timeout=5000)
    threading.Thread(target=lambda: bridge.problem_seen("the store's disk is full"), name="t-problem").start()
    qtbot.waitUntil(window.problem.isVisible, timeout=5000)
    assert "disk is full" in window.problem.text()
    with qtbot.waitSignal(bridge.outcome, timeout=10000):
        source.put(paths[0])  # the same bytes again: answered from the store; the problem clears
    assert not window.problem.isVisible()

    window.close()  # no PIN: the kiosk stays
    assert window.isVisible() and window.pin_box.isVisible()
    qtbot.keyClicks(window.pin_box, "1234")
    qtbot.keyClick(window.pin_box, Qt.Key.Key_Return)
    assert window.isVisible() and window.pin_note.text() == "wrong PIN"
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert not window.pin_box.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    qtbot.keyClicks(window.pin_box, "4321")
    qtbot.keyClick(window.pin_box, Qt.Key.Key_Return)
    assert not window.isVisible() and left == [True]
    assert no_line_threads()


def test_kiosk_on_a_watched_folder_with_the_tiny_model_restarts_where_it_stopped(
    qtbot, tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    folder = tmp_path / "line"  # not there yet: the share is mounted after the kiosk starts
    model = tiny_models["smolvlm"]
    argv = [
        "--source",
        str(folder),
        "--model-path",
        str(model.text_path),
        "--mmproj",
        str(model.mmproj_path),
        "--threads",
        "1",
        "--db",
        str(tmp_path / "loupe.db"),
        "--task",
        "describe",
        "--settle",
        "0.05",
        "--pin",
        "1",
        "--drop",
        "--windowed",
    ]

    def open_kiosk() -> tuple[KioskWindow, LineBridge, Line]:
        bridge = LineBridge()
        window, line, delivery, store = build(vars(parse_args(argv)), bridge)
        qtbot.addWidget(window)
        window.show()
        if delivery is not None:
            delivery.start()
        line.start()
        window.destroyed.connect(store.close)
        return window, bridge, line

    window, bridge, _line = open_kiosk()
    assert window.verdict.text() == "WAITING" and window.recent.count() == 0
    qtbot.waitUntil(lambda: "reconnecting" in window.source_health.text(), timeout=20000)
    assert window.problem.isVisible() and "not there" in window.problem.text()
    folder.mkdir()
    with qtbot.waitSignal(bridge.outcome, timeout=30000):
        (folder / "a.png").write_bytes(png_bytes(1))
    assert "source: ok" in window.source_health.text() and not window.problem.isVisible()
    verdict = window.verdict.text()
    assert verdict in ("PASS", "REVIEW", "FAIL")
    qtbot.waitUntil(lambda: (folder / "processed" / "a.png.json").exists(), timeout=10000)
    qtbot.waitUntil(lambda: "file ok, 0 queued" in window.outputs_label.text(), timeout=10000)
    window.unlocked = True
    window.close()
    assert no_line_threads()

    window2, _, _ = open_kiosk()  # Loupe restarts: the shift so far comes back from the store
    assert window2.recent.count() == 1 and "a.png" in window2.recent.item(0).text()
    assert window2.verdict.text() == verdict and sum(window2.counts.values()) == 1
    window2.unlocked = True
    window2.close()
    assert no_line_threads()


def test_loupe_kiosk_command_opens_the_window_and_saves_a_screenshot(
    tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    """The real entry point in its own process: `loupe kiosk` reaches loupe.desktop.kiosk by name (the engine never
    imports the desktop package)."""
    import subprocess
    import sys

    folder = tmp_path / "line"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(3, (120, 90)))
    model = tiny_models["smolvlm"]
    shot = tmp_path / "kiosk.png"
    cmd = [
        sys.executable,
        "-m",
        "loupe.cli",
        "kiosk",
        "--source",
        str(folder),
        "--model-path",
        str(model.text_path),
        "--mmproj",
        str(model.mmproj_path),
        "--threads",
        "1",
        "--db",
        str(tmp_path / "loupe.db"),
        "--task",
        "describe",
        "--settle",
        "0.05",
        "--screenshot",
        str(shot),
    ]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from PIL import Image

    assert Image.open(shot).size[0] >= 800
    assert (folder / "processed" / "a.png").exists()


def test_space_bar_triggers_a_camera_grab(qtbot, tiny_models: dict[str, SyntheticModel], tmp_path: Path) -> None:
    video = tmp_path / "cam.avi"
    write_video(video, frames=4)
    model = tiny_models["smolvlm"]
    argv = [
        "--source",
        str(video),
        "--trigger",
        "--model-path",
        str(model.text_path),
        "--mmproj",
        str(model.mmproj_path),
        "--threads",
        "1",
        "--db",
        str(tmp_path / "loupe.db"),
        "--task",
        "describe",
        "--frames",
        str(tmp_path / "frames"),
        "--windowed",
    ]
    bridge = LineBridge()
    window, line, _, store = build(vars(parse_args(argv)), bridge)
    qtbot.addWidget(window)
    window.show()
    line.start()
    qtbot.waitUntil(lambda: "ready" in window.model_health.text(), timeout=20000)
    assert window.recent.count() == 0  # nothing is grabbed until triggered
    with qtbot.waitSignal(bridge.outcome, timeout=20000):
        qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.recent.count() == 1 and len(list((tmp_path / "frames").glob("frame-*.jpg"))) == 1
    window.unlocked = True
    window.close()
    store.close()
    assert no_line_threads()
