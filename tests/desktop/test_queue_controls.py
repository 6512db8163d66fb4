"""Queue controls on the real window and engine: pause, cancel one image, retry one, cancel all.

Also thumbnails, escalation steps shown in the result view, and `loupe gui` opening the window with images queued.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loupe.desktop.main_window import LOCAL_ONLY
from loupe.desktop.widgets.queue_view import CANCELED, DONE, ERROR, REVIEW, WAITING
from loupe.models.synthetic import SyntheticModel
from PIL import Image

from tests.desktop.conftest import Harness, write_images

LOCAL_LADDER = """name: defects-ladder
instructions: List the defects.
schema: {type: object, properties: {ok: {type: boolean}}, required: [ok], additionalProperties: false}
escalation: {ladder: ["local@low", "local@high"], thresholds: {overall: 0.99}}
"""


def select(harness: Harness, name: str) -> None:
    tree = harness.window.queue.tree
    row = next(tree.topLevelItem(i) for i in range(tree.topLevelItemCount()) if tree.topLevelItem(i).text(0) == name)
    tree.setCurrentItem(row)


def test_pause_cancel_one_retry_one_and_thumbnails(app_window: Harness, tmp_path: Path, qtbot) -> None:
    w = app_window.window
    q = w.queue
    q.pause_button.click()  # held before anything runs
    assert w.bridge.runner.paused and q.pause_button.text() == "Resume"
    images = write_images(tmp_path / "in", 3, seed=7)
    bad = tmp_path / "in" / "later.png"
    bad.write_text("not yet a picture")
    w.enqueue([str(p) for p in [*images, bad]])
    qtbot.waitUntil(lambda: all(not q.row(1, i).icon(0).isNull() for i in range(3)), timeout=5000)
    assert q.row(1, 3).icon(0).isNull()  # no thumbnail for what cannot be decoded
    assert set(q.states().values()) == {WAITING}
    select(app_window, images[1].name)
    q.cancel_button.click()
    q.pause_button.click()  # resume
    qtbot.waitUntil(lambda: q.unfinished() == 0, timeout=20000)
    states = q.states()
    assert states[images[1].name] == CANCELED and states["later.png"] == ERROR
    assert {states[images[0].name], states[images[2].name]} <= {DONE, REVIEW}
    assert q.progress.value() == q.progress.maximum() == 4
    assert {Path(s.path).name for s in app_window.store.results()} == {images[0].name, images[2].name, "later.png"}

    Image.new("RGB", (64, 48), "white").save(bad, format="PNG")  # the user fixes the file, then retries it
    select(app_window, "later.png")
    assert q.retry_button.isEnabled()
    q.retry_button.click()
    qtbot.waitUntil(lambda: q.states()["later.png"] in (DONE, REVIEW), timeout=20000)
    assert q.tree.topLevelItemCount() == 4  # the same row, not a new one
    assert w.result_view.result is not None


def test_cancel_all_stops_the_rest(app_window: Harness, tmp_path: Path, qtbot) -> None:
    w = app_window.window
    w.queue.pause_button.click()
    w.enqueue([str(p) for p in write_images(tmp_path, 5, seed=8)])
    w.queue.cancel_all_button.click()
    w.queue.pause_button.click()
    qtbot.waitUntil(lambda: w.queue.unfinished() == 0, timeout=20000)
    assert set(w.queue.states().values()) == {CANCELED}
    assert app_window.store.results() == []
    assert not app_window.close_questions


def test_escalation_steps_are_shown_with_the_result(app_window: Harness, tmp_path: Path, qtbot) -> None:
    w = app_window.window
    task_file = tmp_path / "ladder.yaml"
    task_file.write_text(LOCAL_LADDER)
    assert w.tasks.add_file(str(task_file))
    assert w.privacy.text() == LOCAL_ONLY  # local rungs only
    w.enqueue([str(write_images(tmp_path, 1, seed=9)[0])])
    qtbot.waitUntil(lambda: w.queue.unfinished() == 0, timeout=20000)
    w.queue.tree.setCurrentItem(w.queue.tree.topLevelItem(0))
    steps = w.result_view.steps
    assert not steps.isHidden()
    texts = [[steps.topLevelItem(i).text(c) for c in range(6)] for i in range(steps.topLevelItemCount())]
    assert texts[0][:3] == ["local@low", "tiny-smolvlm", "first step"]
    assert texts[1][0] == "local@high" and texts[1][2].startswith("lowest confidence")  # why it climbed
    assert all(t[4] == "$0.0000" and t[5].endswith(" s") for t in texts if t[0] != "review")
    stored = app_window.store.results()[0]
    assert [s.get("step") for s in stored.escalation] == [t[0] for t in texts]
    assert texts[-1][0] == "review" and "sent to review" in w.result_view.status.text()  # never sure enough
    qtbot.waitUntil(lambda: len(w.review.items) == 1, timeout=5000)
    assert "sent to review by the ladder: still doubtful" in w.review.detail.text()


def test_loupe_gui_opens_the_window_with_the_images_queued(
    tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    image = write_images(tmp_path, 1, seed=10)[0]
    shot = tmp_path / "shot.png"
    tiny = tiny_models["smolvlm"]
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "LOUPE_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "LOUPE_MODEL_DIR": str(tmp_path / "models"),
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "loupe.cli",
            "gui",
            "--model-path",
            str(tiny.text_path),
            "--mmproj",
            str(tiny.mmproj_path),
            "--threads",
            "1",
            "--db",
            str(tmp_path / "l.db"),
            "--settings",
            str(tmp_path / "s.ini"),
            "--screenshot",
            str(shot),
            str(image),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    with Image.open(shot) as grabbed:
        assert grabbed.width >= 800 and grabbed.height >= 500
    from loupe.store import Store

    with Store(tmp_path / "l.db") as store:
        assert [Path(s.path).name for s in store.results()] == [image.name]
    assert str(image) in (tmp_path / "s.ini").read_text()  # remembered in the recent files


def test_thumbnails_are_upright_and_bad_files_get_none(qtbot, images: dict[str, Path]) -> None:
    from loupe.desktop.bridge import THUMB_SIDE, ImageDecoder

    decoder = ImageDecoder()
    got: dict[int, object] = {}
    decoder.decoded.connect(lambda token, image: got.__setitem__(token, image))
    tokens = {
        name: decoder.request(str(images[name]), THUMB_SIDE)
        for name in ("exif6", "jpeg", "truncated_png", "bomb", "text_as_jpg", "missing")
    }
    qtbot.waitUntil(lambda: len(got) == len(tokens), timeout=10000)
    upright = got[tokens["exif6"]]
    assert (upright.width(), upright.height()) == (THUMB_SIDE // 2, THUMB_SIDE)  # stored landscape, shown portrait
    top, bottom = upright.pixelColor(12, 2), upright.pixelColor(12, THUMB_SIDE - 3)
    assert top.red() > 200 > top.blue() and bottom.blue() > 200 > bottom.red()  # rotated clockwise
    assert max(got[tokens["jpeg"]].width(), got[tokens["jpeg"]].height()) == THUMB_SIDE
    assert all(got[tokens[n]].isNull() for n in ("truncated_png", "bomb", "text_as_jpg", "missing"))
    decoder.wait()
