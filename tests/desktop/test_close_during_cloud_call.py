"""Closing the window while a cloud request hangs (the hybrid tests' stub server on 127.0.0.1 never answers,
with the default 60 s timeout) stops at once: the request is aborted and audited as canceled, and the local
result of that image is kept in the store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loupe.desktop.settings import AppSettings, CloudSettings
from loupe.escalate.audit import audit_rows
from loupe.store import Store

from tests.desktop.conftest import Harness, write_images
from tests.desktop.test_cloud_from_the_window import CLOUD_LADDER
from tests.hybrid.stub_server import HANG, StubCloud
from tests.hybrid.test_cancel import Arrivals


@pytest.fixture
def hanging() -> Iterator[StubCloud]:
    server = StubCloud([HANG])
    server.received = Arrivals()
    yield server
    server.close()


def test_closing_during_a_hanging_cloud_call_is_prompt_and_keeps_the_local_result(
    app_window: Harness, hanging: StubCloud, tmp_path: Path, qtbot
) -> None:
    w = app_window.window
    task_file = tmp_path / "panel.yaml"
    task_file.write_text(CLOUD_LADDER)
    assert w.tasks.add_file(str(task_file))
    w.apply_settings(AppSettings(cloud=CloudSettings(True, "llama_cpp_server", hanging.base_url, "stub-model")))
    assert w.app_settings.cloud.timeout_s == 60.0
    w.enqueue([str(write_images(tmp_path, 1, seed=41)[0])])
    arrivals = hanging.received
    assert isinstance(arrivals, Arrivals)
    qtbot.waitUntil(arrivals.arrived.is_set, timeout=30000)  # the local rung is done; the cloud call hangs

    t0 = time.perf_counter()
    w.close()
    closed_in = time.perf_counter() - t0
    assert closed_in < 2.0, f"closing took {closed_in:.2f} s"
    assert app_window.close_questions == [1]  # it asked first, as with any unfinished image
    with Store(app_window.db) as store:
        (kept,) = store.results()
        assert kept.result.backend == "llama_cpp" and kept.result.data is not None  # the local answer
        assert [s.get("status") for s in kept.escalation][:2] == ["ok", "error"]
        assert [r["status"] for r in audit_rows(store)] == ["cancelled"]
