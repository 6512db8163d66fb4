"""Issue 21's desktop polish: Qt's libraries checked before Qt starts, confidence to 2 significant digits, the
result tree without clipping or "(root) null", Pause after a batch, a blank new task, Help → About."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from loupe.cli.common import pretty, short
from loupe.core.confidence import format_confidence
from loupe.core.types import Box, ImageInfo, Result, Status
from loupe.desktop import qt_libs
from loupe.desktop.widgets.about import AboutDialog, docs_link
from loupe.desktop.widgets.queue_view import DONE, REVIEW
from loupe.desktop.widgets.result_view import ResultView
from loupe.desktop.widgets.task_picker import TaskPicker

from tests.desktop.conftest import Harness, write_images

# what `ldd libqxcb.so` says on a stock Debian 12 desktop (abridged)
LDD_DEBIAN12 = """\
\tlinux-vdso.so.1 (0x00007ffd5b1f0000)
\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x00007f1c8a000000)
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f1c89ff0000)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f1c89fe0000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-cursor.so.0 => not found
\tlibmystery.so.7 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1c89c00000)
"""
LDD_ALL_THERE = "\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f1c8a000000)\n"


def test_missing_qt_libraries_are_named_with_the_apt_line() -> None:
    assert qt_libs.missing_libraries(LDD_DEBIAN12) == [
        "libxcb-cursor.so.0",
        "libxcb-icccm.so.4",
        "libxcb-keysyms.so.1",
        "libmystery.so.7",
    ]
    plugin = Path("/x/libqxcb.so")
    asked: list[Path] = []

    def ldd(path: Path) -> str:
        asked.append(path)
        return LDD_DEBIAN12

    message = qt_libs.problem("loupe gui", env={"DISPLAY": ":0"}, platform="linux", plugin=plugin, ldd=ldd)
    assert asked == [plugin] and message is not None and "\n" not in message
    assert message.startswith("loupe gui: Qt's X11 libraries are missing (libxcb-cursor.so.0, ")
    assert "sudo apt-get install -y libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libmystery.so.7 " in message
    assert "Reinstalling" not in message


@pytest.mark.parametrize(
    ("env", "argv", "platform", "output", "says"),
    [
        ({"DISPLAY": ":0"}, [], "linux", LDD_ALL_THERE, False),  # everything installed
        ({"QT_QPA_PLATFORM": "xcb"}, [], "linux", LDD_DEBIAN12, True),
        ({"QT_QPA_PLATFORM": "offscreen"}, [], "linux", LDD_DEBIAN12, False),  # xcb is not loaded
        ({"WAYLAND_DISPLAY": "wayland-0"}, [], "linux", LDD_DEBIAN12, False),
        ({"QT_QPA_PLATFORM": "offscreen"}, ["loupe", "-platform", "xcb"], "linux", LDD_DEBIAN12, True),
        ({}, [], "darwin", LDD_DEBIAN12, False),
        ({}, [], "linux", None, False),  # no ldd: Qt says what it says
    ],
)
def test_the_check_applies_only_where_qt_loads_its_xcb_plugin(
    env: dict[str, str], argv: list[str], platform: str, output: str | None, says: bool
) -> None:
    got = qt_libs.problem("loupe", env=env, argv=argv, platform=platform, plugin=Path("/p"), ldd=lambda _p: output)
    assert (got is not None) == says


def test_this_machines_xcb_plugin_is_checked_by_the_real_ldd() -> None:
    plugin = qt_libs.xcb_plugin()
    if plugin is None:
        pytest.skip("this PySide6 has no xcb plugin")
    output = qt_libs.run_ldd(plugin)
    if output is None:
        pytest.skip("no ldd here")
    assert "libxcb" in output  # the plugin links the xcb libraries the table names
    linked = set(qt_libs.PACKAGES) & set(output.split())
    assert {"libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"} <= linked
    assert set(qt_libs.README_PACKAGES) <= set(qt_libs.PACKAGES.values())
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert qt_libs.readme_line() in readme


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0023, "0.0023"),
        (0.004, "0.0040"),
        (0.5, "0.50"),
        (0.24, "0.24"),
        (0.6, "0.60"),
        (0.0995, "0.10"),
        (0.999, "1.0"),
        (1.0, "1.0"),
        (0.0, "0"),
        (0.000012345, "0.000012"),
    ],
)
def test_confidence_reads_to_two_significant_digits(value: float, text: str) -> None:
    assert format_confidence(value) == text


def _result(status: Status = Status.OK, data: object = None, confidence: dict[str, float] | None = None) -> Result:
    return Result(
        status=status,
        task="defects",
        model="m",
        backend="fake",
        images=(ImageInfo(id="a", path="a.png", sha256="0" * 64, width=4, height=3, sent_width=4, sent_height=3),),
        data=data,
        confidence=confidence or {},
        boxes=(Box("/defects/0/box_2d", "scratch", (0, 0, 500, 500), (0, 0, 2, 2), "a", confidence=0.0023),)
        if data
        else (),
        error=None if status is Status.OK else "the answer did not parse",
    )


def test_cli_lines_show_two_significant_digits() -> None:
    r = _result(data={"n": 1, "m": 2}, confidence={"/n": 0.0023, "/m": 0.004})
    assert short(r).endswith("lowest confidence 0.0023)")
    assert "lowest confidence  /n 0.0023, /m 0.0040" in pretty(r)


def test_result_view_confidences_error_rows_and_the_confidence_column(qtbot) -> None:
    view = ResultView()
    qtbot.addWidget(view)
    view.resize(1100, 700)  # the main window's default share for the result view
    view.show()
    data = {"defects": [{"label": "scratch", "severity": 3}], "a_rather_long_field_name": "x" * 80}
    conf = {"/defects/0/label": 0.0023, "/defects/0/severity": 0.004, "/a_rather_long_field_name": 0.5}
    view.show_result("a.png", _result(data=data, confidence=conf), 0.6)
    rows = view.tree.items()
    assert rows["/defects/0/label"].text(2).endswith("0.0023") and rows["/defects/0/severity"].text(2).endswith(
        "0.0040"
    )
    assert "lowest confidence 0.0023" in view.status.text()
    assert [i.text() for i in view.canvas.scene().items() if hasattr(i, "text") and "scratch" in i.text()] == [
        "scratch 0.0023"
    ]
    tree = view.tree
    qtbot.waitUntil(lambda: tree.header().sectionViewportPosition(2) + tree.columnWidth(2) <= tree.viewport().width())
    for row in rows.values():  # every confidence fits its column (not elided)
        text = row.text(2)
        if text:
            assert tree.fontMetrics().horizontalAdvance(text) <= tree.columnWidth(2)

    view.show_result("b.png", _result(Status.ERROR), 0.6)
    assert view.tree.topLevelItemCount() == 0  # no "(root) null" row
    assert "status <b>error</b>" in view.status.text()


def test_pause_is_disabled_once_a_batch_is_done(app_window: Harness, tmp_path: Path, qtbot) -> None:
    q = app_window.window.queue
    assert q.pause_button.isEnabled()  # the queue can be held before the first drop
    app_window.window.enqueue([str(p) for p in write_images(tmp_path, 2, seed=31)])
    assert q.pause_button.isEnabled()
    qtbot.waitUntil(lambda: q.unfinished() == 0, timeout=30000)
    assert set(q.states().values()) <= {DONE, REVIEW} and q.progress.value() == 2
    assert not q.pause_button.isEnabled()  # 2 / 2: nothing left to pause
    app_window.window.enqueue([str(p) for p in write_images(tmp_path / "more", 1, seed=32)])
    if q.unfinished():
        assert q.pause_button.isEnabled()
    qtbot.waitUntil(lambda: q.unfinished() == 0, timeout=30000)
    review = app_window.window.review
    qtbot.waitUntil(lambda: review.list.count() == len(review.items), timeout=5000)
    for i, stored in enumerate(review.items):  # the review list shows the same 2-significant-digit numbers
        low = stored.result.min_confidence
        if low is not None:
            assert review.list.item(i).text().startswith(format_confidence(low) + "  ")


def test_new_task_opens_blank_and_copy_task_starts_from_the_selected_one(qtbot) -> None:
    picker = TaskPicker("defects")
    qtbot.addWidget(picker)
    blank = picker.open_editor()
    assert blank.name.text() == "" and blank.instructions.toPlainText() == ""
    assert "defects" not in blank.schema.toPlainText() and blank.task is None  # nothing to save yet
    blank.instructions.setPlainText("Count the bolts.")
    assert set(blank.check()) == {"name"}  # a name is asked for, not borrowed from the selected task
    blank.reject()
    copy = picker.copy_task()
    assert copy.name.text() == "defects-copy" and "defects" in copy.schema.toPlainText()
    copy.reject()


def test_help_about_shows_the_version_license_and_docs(app_window: Harness) -> None:
    w = app_window.window
    titles = [a.text() for a in w.menuBar().actions()]
    assert "&Help" in titles
    about = w.open_about()
    assert isinstance(about, AboutDialog)
    text = about.text.text()
    assert importlib.metadata.version("loupe") in text and "Apache-2.0" in text and "Documentation" in text
    assert docs_link({"documentation": "https://example.org/docs"}) == "https://example.org/docs"
    about.reject()
