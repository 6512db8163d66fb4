"""Hybrid mode from the window: cloud settings and keyring key reach the ladder, the cloud step is shown, audited.

The indicator says data may leave. The 'cloud' is the hybrid tests' stub OpenAI-compatible server on 127.0.0.1 (a real
HTTP server, not a mock of the client).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from loupe.desktop.main_window import LOCAL_ONLY
from loupe.desktop.settings import AppSettings, CloudSettings
from loupe.escalate.audit import audit_rows

from tests.desktop.conftest import Harness, write_images
from tests.desktop.test_settings_and_tasks import MemoryRing
from tests.hybrid.stub_server import StubCloud, completion

KEY = "sk-desk-test-0123456789"
CLOUD_LADDER = """name: panel-ok
instructions: Is the panel fine?
schema: {type: object, properties: {ok: {type: boolean}}, required: [ok], additionalProperties: false}
options: {max_tokens: 24}
escalation: {ladder: ["local@low", "cloud@high"], thresholds: {overall: 0.99}, cloud: true}
"""


@pytest.fixture
def stub() -> Iterator[StubCloud]:
    server = StubCloud([completion(json.dumps({"ok": True}))])
    yield server
    server.close()


def test_doubtful_result_goes_to_the_configured_cloud_with_the_keyring_key(
    app_window: Harness, stub: StubCloud, tmp_path: Path, qtbot
) -> None:
    w = app_window.window
    ring = MemoryRing()
    ring.set_password("loupe", "llama_cpp_server", KEY)
    w.ring = ring
    task_file = tmp_path / "panel.yaml"
    task_file.write_text(CLOUD_LADDER)
    assert w.tasks.add_file(str(task_file))
    assert w.privacy.text() == LOCAL_ONLY  # the task allows the cloud, the settings do not yet
    w.apply_settings(AppSettings(cloud=CloudSettings(True, "llama_cpp_server", stub.base_url, "stub-model")))
    assert w.privacy.text() == f"May send images to {stub.base_url} (stub-model)"

    w.enqueue([str(write_images(tmp_path, 1, seed=11)[0])])
    qtbot.waitUntil(lambda: w.queue.unfinished() == 0, timeout=20000)
    w.queue.tree.setCurrentItem(w.queue.tree.topLevelItem(0))
    assert w.result_view.result is not None and w.result_view.result.data == {"ok": True}  # the cloud's answer
    steps = w.result_view.steps
    rows = [[steps.topLevelItem(i).text(c) for c in range(6)] for i in range(steps.topLevelItemCount())]
    assert [r[:2] for r in rows] == [["local@low", "tiny-smolvlm"], ["cloud@high", "stub-model"]]
    assert rows[1][3] == "accepted" and rows[1][2].startswith("lowest confidence")
    assert len(stub.received) == 1 and stub.received[0].headers["authorization"] == f"Bearer {KEY}"
    audited = audit_rows(app_window.store)
    assert len(audited) == 1 and audited[0]["model"] == "stub-model"
    assert KEY not in json.dumps(audited)


def test_with_the_cloud_off_in_settings_nothing_is_sent(
    app_window: Harness, stub: StubCloud, tmp_path: Path, qtbot
) -> None:
    w = app_window.window
    w.ring = MemoryRing()
    task_file = tmp_path / "panel.yaml"
    task_file.write_text(CLOUD_LADDER)
    assert w.tasks.add_file(str(task_file))
    w.apply_settings(AppSettings(cloud=CloudSettings(False, "llama_cpp_server", stub.base_url, "stub-model")))
    assert w.privacy.text() == LOCAL_ONLY
    w.enqueue([str(write_images(tmp_path, 1, seed=12)[0])])
    qtbot.waitUntil(lambda: w.queue.unfinished() == 0, timeout=20000)
    w.queue.tree.setCurrentItem(w.queue.tree.topLevelItem(0))
    steps = w.result_view.steps
    cloud_row = [
        steps.topLevelItem(i).text(3)
        for i in range(steps.topLevelItemCount())
        if steps.topLevelItem(i).text(0).startswith("cloud")
    ]
    assert cloud_row == ["skipped: the cloud is not enabled for this task"]
    assert stub.received == [] and audit_rows(app_window.store) == []
