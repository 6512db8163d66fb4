"""The Search tab, driven like a user on a hand-made store (real image files): a typed query, Find similar and
Show duplicates on a shown result give exactly the rows `loupe.search` gives (same result ids, same order)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from loupe.desktop.bridge import EngineBridge
from loupe.desktop.main_window import MainWindow
from loupe.search import dupes, like, text, where
from loupe.store import Store
from PySide6.QtCore import Qt

from tests.search.conftest import Made, make_store


@pytest.fixture
def searched(qtbot, tmp_path: Path) -> Iterator[tuple[MainWindow, Made]]:
    """The window over the search tests' store; no model is loaded (nothing is analysed here)."""
    made = make_store(tmp_path)
    store = Store(made.db)

    def no_model():  # never called: the bridge is not started
        raise AssertionError("no model in this test")

    window = MainWindow(EngineBridge(no_model, made.db), store, confirm_stop=lambda *_: True)
    qtbot.addWidget(window)
    window.show()
    yield window, made
    window.close()
    store.close()


def _ids(hits) -> list[int]:
    return [h.result_id for h in hits]


def _search(qtbot, window: MainWindow, query: str) -> None:
    view = window.search
    before = view.searched
    window.tabs.setCurrentWidget(view)
    view.query.clear()
    qtbot.keyClicks(view.query, query)
    qtbot.mouseClick(view.search_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.searched > before)


@pytest.mark.parametrize("query", ["/defects/*/label = crack", "/total <= 100", "acme", "crack", "", "nowhere"])
def test_a_typed_query_shows_what_loupe_search_returns(qtbot, searched, query: str) -> None:
    window, made = searched
    _search(qtbot, window, query)
    with Store(made.db) as store:
        expected = where(store, query) if not query or query.startswith("/") else text(store, query)
    assert window.search.result_ids() == _ids(expected)
    assert window.search.tree.topLevelItemCount() == len(expected)
    if expected:
        row = window.search.tree.topLevelItem(0)
        assert row.toolTip(0) == expected[0].path and row.text(1) == expected[0].status
        qtbot.waitUntil(lambda: not window.search.tree.topLevelItem(0).icon(0).isNull())  # its thumbnail


def test_a_bad_expression_is_one_line_in_the_view(qtbot, searched) -> None:
    window, _ = searched
    _search(qtbot, window, "/total >")
    message = window.search.message.text()
    assert "failed" in message and "\n" not in message and "Traceback" not in message
    assert window.search.result_ids() == []


def test_find_similar_and_show_duplicates_on_a_shown_result(qtbot, searched) -> None:
    window, made = searched
    b = made.ids["b"]
    window.open_stored(b)  # what double-clicking a search row does
    assert window.tabs.currentIndex() == 0 and window.result_view.result_id == b
    before = window.search.searched
    qtbot.mouseClick(window.result_view.similar_button, Qt.MouseButton.LeftButton)
    assert window.tabs.currentWidget() is window.search
    qtbot.waitUntil(lambda: window.search.searched > before)
    with Store(made.db) as store:
        assert window.search.result_ids() == _ids(like(store, b))
        all_groups = dupes(store)

    window.open_stored(made.ids["a_q30"])
    before = window.search.searched
    qtbot.mouseClick(window.result_view.dupes_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.search.searched > before)
    assert window.search.result_ids() == _ids(all_groups)  # one group here: a and its copies, in store order
    assert window.search.result_ids()[:3] == [made.ids[n] for n in ("a", "a_small", "a_q30")]


def test_double_clicking_a_row_shows_that_result(qtbot, searched) -> None:
    window, made = searched
    _search(qtbot, window, "/merchant ~ acme")
    row = window.search.tree.topLevelItem(1)
    rect = window.search.tree.visualItemRect(row)
    viewport = window.search.tree.viewport()
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())  # Qt 6 wants the press first
    qtbot.mouseDClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: window.tabs.currentIndex() == 0)
    assert window.result_view.result_id == made.ids["a_small"]
    assert window.result_view.path == str(made.images["a_small"])
