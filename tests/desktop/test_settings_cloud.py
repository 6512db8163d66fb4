"""The settings dialog's cloud page: timeouts, retries, image size and prices persist and reach the engine's
CloudConfig (never the key); "Test connection" sends one tiny audited request to the hybrid tests' stub
OpenAI-compatible server on 127.0.0.1 (a real HTTP server) and says plainly what came of it."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from loupe.desktop.settings import AppSettings, CloudSettings, load_settings, save_settings
from loupe.desktop.widgets.settings_dialog import SettingsDialog
from loupe.escalate.audit import audit_rows
from loupe.escalate.connection import PROBE_TEXT
from loupe.store import Store
from PySide6.QtCore import QSettings

from tests.desktop.conftest import Harness
from tests.desktop.test_settings_and_tasks import MemoryRing
from tests.hybrid.stub_server import Reply, StubCloud, completion, error, garbage

KEY = "sk-probe-test-0123456789"


@pytest.fixture
def stub() -> Iterator[StubCloud]:
    server = StubCloud()
    yield server
    server.close()


def _dialog(
    qtbot,
    db: Path | None,
    base_url: str,
    *,
    enabled: bool = True,
    ring: MemoryRing | None = None,
    preset: str = "llama_cpp_server",
) -> SettingsDialog:
    dialog = SettingsDialog(AppSettings(), ring=ring or MemoryRing(), db_path=db)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.cloud_enabled.setChecked(enabled)
    dialog.preset.setCurrentText(preset)
    dialog.base_url.setText(base_url)
    dialog.cloud_model.setText("stub-model")
    return dialog


def test_cloud_limits_and_prices_persist_and_reach_the_engine_config(
    qtbot, app_window: Harness, tmp_path: Path
) -> None:
    ring = MemoryRing()
    dialog = _dialog(qtbot, None, "http://127.0.0.1:9/v1", ring=ring)
    dialog.timeout.setValue(12.5)
    dialog.retries.setValue(5)
    dialog.max_side.setValue(768)
    dialog.price_in.setValue(0.15)  # per million tokens, as cloud.toml and price lists give them
    dialog.price_out.setValue(0.6)
    dialog.api_key.setText(KEY)
    dialog.accept()
    chosen = dialog.settings()
    ini = tmp_path / "loupe.ini"
    save_settings(QSettings(str(ini), QSettings.Format.IniFormat), chosen)
    QSettings(str(ini), QSettings.Format.IniFormat).sync()
    again = load_settings(QSettings(str(ini), QSettings.Format.IniFormat))
    assert again == chosen and KEY not in ini.read_text() and ring.saved == {("loupe", "llama_cpp_server"): KEY}
    assert again.cloud == CloudSettings(
        True, "llama_cpp_server", "http://127.0.0.1:9/v1", "stub-model", 12.5, 5, 768, 0.15, 0.6
    )

    w = app_window.window
    w.ring = ring
    w.apply_settings(again)
    access = w.cloud_access()  # what the worker hands to the escalation ladder
    assert access.api_key == KEY and access.config is not None
    c = access.config
    assert (c.timeout_s, c.max_retries, c.max_side, c.enabled) == (12.5, 5, 768, True)
    assert c.price_in_per_mtok == pytest.approx(0.15) and c.price_out_per_mtok == pytest.approx(0.6)
    assert c.cost(1000, 1000) == pytest.approx(0.00075)  # 1k in + 1k out at the prices typed per million


def test_nonsense_numbers_in_a_hand_edited_settings_file_fall_back_to_the_defaults(tmp_path: Path) -> None:
    ini = QSettings(str(tmp_path / "loupe.ini"), QSettings.Format.IniFormat)
    for key, value in (
        ("cloud/timeout_s", "-3"),
        ("cloud/max_retries", "many"),
        ("cloud/max_side", "2"),
        ("cloud/price_in_per_mtok", "2.5"),
        ("cloud/price_out_per_mtok", "-1"),
    ):
        ini.setValue(key, value)
    cloud = load_settings(ini).cloud
    assert (cloud.timeout_s, cloud.max_retries, cloud.max_side) == (60.0, 3, 1024)
    assert (cloud.price_in_per_mtok, cloud.price_out_per_mtok) == (2.5, 0.0)


def test_prices_saved_per_1k_tokens_by_an_older_version_read_per_million(tmp_path: Path) -> None:
    ini = QSettings(str(tmp_path / "loupe.ini"), QSettings.Format.IniFormat)
    ini.setValue("cloud/price_in_per_1k", "0.002")
    ini.setValue("cloud/price_out_per_1k", "0.008")
    cloud = load_settings(ini).cloud
    assert cloud.price_in_per_mtok == pytest.approx(2.0) and cloud.price_out_per_mtok == pytest.approx(8.0)


@pytest.mark.parametrize(
    ("reply", "verdict", "words"),
    [
        (completion("OK", prompt_tokens=9, completion_tokens=1), "Connection OK", "answered with model stub-model"),
        (error(401), "Bad key", "refused the API key"),
        (error(404), "Wrong model", "does not serve model 'stub-model'"),
        (garbage(), "Failed", "not as an OpenAI-compatible server"),
    ],
)
def test_test_connection_says_what_happened_and_is_audited(
    qtbot, stub: StubCloud, tmp_path: Path, reply: Reply, verdict: str, words: str
) -> None:
    stub.script = [reply]
    ring = MemoryRing()
    ring.set_password("loupe", "llama_cpp_server", KEY)
    db = tmp_path / "loupe.db"
    Store(db).close()
    dialog = _dialog(qtbot, db, stub.base_url, ring=ring)
    check = dialog.test_connection()
    assert check is not None and not dialog.test_button.isEnabled()  # one test at a time
    with qtbot.waitSignal(check.finished, timeout=10000):
        pass
    assert dialog.test_result.text().startswith(f"{verdict}: ") and words in dialog.test_result.text()
    assert dialog.test_button.isEnabled()
    (req,) = stub.received  # one tiny request, text only, with the keyring's key
    body = req.json
    assert body["messages"] == [{"role": "user", "content": PROBE_TEXT}] and body["model"] == "stub-model"
    assert req.images == [] and req.headers["authorization"] == f"Bearer {KEY}"
    with Store(db) as store:
        (row,) = audit_rows(store)
    assert row["destination"] == stub.base_url.split("/")[2] and row["model"] == "stub-model"
    assert row["image_sha256"] == [] and row["bytes_out"] == len(req.body) and row["bytes_in"] == len(reply.body)
    assert KEY not in json.dumps(row)


def test_test_connection_to_a_closed_port_says_unreachable(qtbot, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "loupe.db"
    Store(db).close()
    dialog = _dialog(qtbot, db, f"http://127.0.0.1:{port}/v1")
    with qtbot.waitSignal(dialog.test_connection().finished, timeout=10000):  # type: ignore[union-attr]
        pass
    assert dialog.test_result.text().startswith("Unreachable: ")
    with Store(db) as store:
        assert [r["status"] for r in audit_rows(store)] == ["connection"]  # an attempt to send is on record too


def test_test_connection_is_refused_when_the_cloud_is_off_or_offline_forbids_it(
    qtbot, stub: StubCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "loupe.db"
    Store(db).close()
    off = _dialog(qtbot, db, stub.base_url, enabled=False)
    assert off.test_connection() is None
    assert off.test_result.text().startswith("Refused: Turn the cloud on")
    monkeypatch.setenv("LOUPE_OFFLINE", "1")
    remote = _dialog(qtbot, db, "", preset="openai")  # the preset's api.openai.com: not this machine
    assert remote.test_connection() is None
    assert "LOUPE_OFFLINE=1 forbids sending to api.openai.com" in remote.test_result.text()
    assert stub.received == []
    with Store(db) as store:
        assert audit_rows(store) == []  # nothing left, nothing recorded
    stub.script = [completion("OK")]
    local = _dialog(qtbot, db, stub.base_url)  # LOUPE_OFFLINE allows this machine
    with qtbot.waitSignal(local.test_connection().finished, timeout=10000):  # type: ignore[union-attr]
        pass
    assert local.test_result.text().startswith("Connection OK")


def test_the_window_passes_its_store_to_the_connection_test(app_window: Harness) -> None:
    w = app_window.window
    w.apply_settings(replace(w.app_settings, cloud=CloudSettings(enabled=False)))
    dialog = w.open_settings()
    assert dialog.db_path == app_window.db and dialog.test_button.isEnabled()
    dialog.reject()
