"""The kiosk window driven with pytest-qt (offscreen): outcomes, counts, health, errors in place, PIN, restart."""

from __future__ import annotations

import os

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

from tests.floor.conftest import DEFECTS, DEFECTS_FILE, defects_json, fake_engine, png_bytes, write_video


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
        rules=DEFECTS_FILE.rules,
        outputs=DEFECTS_FILE.outputs,
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
        schema=DEFECTS.schema,
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
    assert window.verdict.text() == "FAIL" and "Defects › Severity ≥ 3 (read: 3)" in window.reason.text()  # no pointers
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
        "--pin",
        "7",
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
        "--pin",
        "1",
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


def test_the_kiosk_refuses_to_start_without_a_pin(monkeypatch, capsys, tmp_path: Path) -> None:
    from loupe.core.errors import LoupeError
    from loupe.desktop.kiosk.app import NO_PIN, main, operator_pin

    monkeypatch.delenv("LOUPE_KIOSK_PIN", raising=False)
    argv = ["--source", str(tmp_path / "line"), "--db", str(tmp_path / "loupe.db")]
    assert main(argv) == 2  # refused before a window, a model or the store is opened
    err = capsys.readouterr().err
    assert err == f"loupe-kiosk: {NO_PIN}\n" and "0000" not in err
    assert not (tmp_path / "loupe.db").exists()
    with pytest.raises(LoupeError):
        operator_pin({"pin": "  "}, env={})
    assert operator_pin({"pin": None}, env={"LOUPE_KIOSK_PIN": "2468"}) == "2468"
    assert operator_pin({"pin": "1357"}, env={"LOUPE_KIOSK_PIN": "2468"}) == "1357"  # the flag wins


def test_reasons_in_operator_words_from_the_schema_titles() -> None:
    from loupe.desktop.kiosk.words import field_name, operator_reason

    schema = DEFECTS.schema
    assert (
        operator_reason("unsure FAIL: /defects/*/severity >= 3 (5), read with confidence 0.24 < 0.60", schema)
        == "FAIL? the model is unsure — Defects › Severity ≥ 3 (read: 5), confidence 0.24, below 0.60"
    )
    assert operator_reason("confidence 0.0023 < 0.50", schema) == "low confidence: 0.0023, below 0.50"
    assert operator_reason("2 at /defects (>= 3)", schema) == "2 at Defects (≥ 3)"
    assert operator_reason("no rule matched", schema) == "every check passed"
    assert operator_reason("status error: /tmp/a.png is not a picture", schema).endswith("/tmp/a.png is not a picture")
    assert operator_reason("scratch near the edge", schema) == "scratch near the edge"  # a task's own reason
    titled = {
        "type": "object",
        "properties": {
            "parts": {
                "title": "Parts",
                "type": "array",
                "items": {"type": "object", "properties": {"torque_nm": {"title": "Bolt torque (N·m)"}}},
            },
            "unitPrice": {"type": "number"},
        },
    }
    assert field_name("/parts/*/torque_nm", titled) == "Parts › Bolt torque (N·m)"
    assert field_name("/parts/2/torque_nm", titled) == "Parts #3 › Bolt torque (N·m)"
    assert field_name("/unitPrice", titled) == "Unit price"
    assert "/" not in operator_reason("/parts/*/torque_nm > 40 (55)", titled)


def test_a_synthetic_model_shows_a_warning_banner(qtbot, tiny_models: dict[str, SyntheticModel]) -> None:
    from loupe.api import ModelSpec
    from loupe.desktop.kiosk.app import synthetic_file

    model = tiny_models["smolvlm"]
    assert synthetic_file(ModelSpec(path=str(model.text_path), mmproj=str(model.mmproj_path)))
    assert not synthetic_file(ModelSpec(model="smolvlm-256m"))
    bridge = LineBridge()
    window = KioskWindow(bridge, task="defects", pin="1")
    qtbot.addWidget(window)
    window.show()
    assert not window.synthetic_banner.isVisible()
    threading.Thread(target=lambda: bridge.synthetic_model("tiny-smolvlm"), name="t-synthetic").start()
    qtbot.waitUntil(window.synthetic_banner.isVisible, timeout=5000)
    assert "TEST MODEL" in window.synthetic_banner.text() and "tiny-smolvlm" in window.synthetic_banner.text()
    window.unlocked = True
    window.close()


def test_the_verdict_is_never_clipped_even_in_a_small_window_with_the_pin_field_open(qtbot) -> None:
    bridge = LineBridge()
    window = KioskWindow(bridge, task="defects", pin="1")
    qtbot.addWidget(window)
    window.resize(726, 631)  # what a window manager-less X server gave the kiosk before it set its geometry
    window.show()
    qtbot.waitExposed(window)
    window.ask_pin()
    for text in ("WAITING", "REVIEW", "PASS"):
        window.verdict.setText(text)
        qtbot.waitUntil(window.verdict.fits, timeout=5000)
        assert window.verdict.geometry().bottom() < window.pin_box.geometry().top()  # the PIN field is below it
    window.unlocked = True
    window.close()


DRIVER = """
import json, shutil, subprocess, sys
from PySide6.QtWidgets import QApplication
from PySide6.QtTest import QTest
app = QApplication(sys.argv[:1])
from loupe.desktop.kiosk.app import cover_screen
from loupe.desktop.kiosk.bridge import LineBridge
from loupe.desktop.kiosk.window import KioskWindow
window = KioskWindow(LineBridge(), task="defects", pin="1")
cover_screen(window)
assert QTest.qWaitForWindowExposed(window, 20000)
QTest.qWait(0)
handle = window.windowHandle()
screen = window.screen().geometry()
shot = window.grab()
shot.save(sys.argv[1])
print(json.dumps({
    "window": [window.x(), window.y(), window.width(), window.height()],
    "frame": [window.frameGeometry().x(), window.frameGeometry().y(), window.frameGeometry().width(),
              window.frameGeometry().height()],
    "screen": [screen.x(), screen.y(), screen.width(), screen.height()],
    "grab": [shot.width(), shot.height()],
    "fits": window.verdict.fits(),
    "x_tree": subprocess.run(["xwininfo", "-root", "-children"], capture_output=True, text=True).stdout
    if shutil.which("xwininfo") else "",
}))
window.unlocked = True
window.close()
"""


def test_the_kiosk_covers_the_screen_under_xvfb_without_a_window_manager(tmp_path: Path) -> None:
    """A kiosk box has an X server and no window manager: `showFullScreen` alone leaves a 726x631 window there."""
    import json
    import shutil
    import subprocess
    import sys

    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (apt-get install -y xvfb)")
    from loupe.desktop.qt_libs import problem

    missing = problem("test", env={"QT_QPA_PLATFORM": "xcb"})
    if missing is not None:
        pytest.skip(missing)
    read, write = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as displayfd:
            display = displayfd.readline().strip()  # written once the server accepts clients: no sleep
        assert display, "Xvfb did not start"
        env = {**os.environ, "DISPLAY": f":{display}", "QT_QPA_PLATFORM": "xcb"}
        env.pop("WAYLAND_DISPLAY", None)
        shot = tmp_path / "kiosk-xvfb.png"
        done = subprocess.run(
            [sys.executable, "-c", DRIVER, str(shot)], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(10)
    assert seen["screen"] == [0, 0, 1400, 900]
    assert seen["window"] == seen["screen"] and seen["frame"] == seen["screen"]  # no window manager, no frame
    assert seen["grab"] == [1400, 900] and seen["fits"]
    from PIL import Image

    assert Image.open(shot).size == (1400, 900)
    if seen["x_tree"]:  # the X server's own view, while the kiosk runs: a top-level window of the whole screen
        assert "1400x900+0+0" in seen["x_tree"], seen["x_tree"]
