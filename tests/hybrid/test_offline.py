"""LOUPE_OFFLINE=1 vetoes every endpoint that is not this machine, even with both cloud switches on.

Loopback servers (Ollama, LM Studio, llama.cpp on 127.0.0.1) stay usable. (tests/conftest.py sets LOUPE_OFFLINE=1.)
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import loupe.core.secrets
import pytest
from loupe import taskfile
from loupe.api import Engine
from loupe.backends.cloud import CloudConfig
from loupe.backends.fake import FakeBackend
from loupe.cli import main
from loupe.escalate.hybrid import Escalator, offline_veto
from loupe.store.sqlite import Store

from tests.hybrid.conftest import KEY, TASK
from tests.hybrid.stub_server import StubCloud, completion
from tests.noise import noise_image

ESCALATING = {"ladder": ["local@low", "cloud@high"], "thresholds": {"overall": 0.9}, "cloud": True}
TASK_E = replace(TASK, escalation=ESCALATING)
REMOTE = CloudConfig(preset="openai", enabled=True)  # https://api.openai.com/v1


def _image(tmp_path: Path) -> str:
    path = tmp_path / "a.png"
    noise_image((32, 24), 1).save(path)
    return str(path)


def test_offline_vetoes_a_remote_endpoint_and_the_case_goes_to_review(
    no_sockets: list[Any], store: Store, tmp_path: Path
) -> None:
    local = Engine(FakeBackend(['{"n": 4}'], prob=0.6))
    ladder = Escalator(taskfile.parse(TASK_E).policy, lambda: local, REMOTE, api_key=KEY, store=store)
    esc = ladder([_image(tmp_path)], TASK_E)
    ladder.close()
    reason = "LOUPE_OFFLINE=1 forbids sending to api.openai.com (not this machine)"
    assert ladder.cloud_engine is None and not ladder.cloud_on and ladder.veto == reason
    assert esc.steps[1].outcome == "skipped" and esc.steps[1].note == reason
    assert esc.review and esc.review_reason == reason and esc.result.data == {"n": 4}
    assert no_sockets == []


def test_loopback_endpoints_stay_allowed_offline(stub: StubCloud, store: Store, tmp_path: Path) -> None:
    stub.script = [completion('{"n": 6}')]
    port = stub.base_url.split(":")[2].split("/")[0]
    config = CloudConfig(preset="openai", base_url=f"http://localhost:{port}/v1", model="m", enabled=True)
    local = Engine(FakeBackend(['{"n": 4}'], prob=0.6))
    ladder = Escalator(taskfile.parse(TASK_E).policy, lambda: local, config, api_key=KEY, store=store)
    esc = ladder([_image(tmp_path)], TASK_E)
    ladder.close()
    assert esc.result.backend == "cloud" and esc.result.data == {"n": 6} and len(stub.received) == 1


def test_loopback_is_judged_without_dns() -> None:
    offline = {"LOUPE_OFFLINE": "1"}
    for url in (
        "http://127.0.0.1:8080/v1",
        "http://127.8.9.10/v1",
        "http://[::1]:1234/v1",
        "http://localhost/v1",
        "http://LOCALHOST:11434",
    ):
        assert offline_veto(replace(REMOTE, base_url=url), offline) is None, url
    # a subdomain of localhost resolves through the system's resolver, which may ask the network (loupe.core.net)
    for url in (
        "https://api.openai.com/v1",
        "http://192.168.1.20:11434/v1",
        "http://10.0.0.1/v1",
        "http://localhost.evil.com/v1",
        "http://[::2]/v1",
        "http://app.localhost/v1",
        "not a url",
    ):
        assert offline_veto(replace(REMOTE, base_url=url), offline) is not None, url
    assert offline_veto(REMOTE, {"LOUPE_OFFLINE": "1"}) is not None
    assert offline_veto(REMOTE, {}) is None and offline_veto(REMOTE, {"LOUPE_OFFLINE": "0"}) is None
    assert offline_veto(CloudConfig(preset="ollama"), {"LOUPE_OFFLINE": "yes"}) is None


def test_cli_says_why_nothing_leaves_and_needs_no_key(
    no_sockets: list[Any], tiny_models: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loupe.core.secrets, "_default_keyring", lambda: None)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    task = tmp_path / "digit.json"
    task.write_text(
        json.dumps(
            {
                "name": "digit",
                "instructions": TASK.instructions,
                "schema": TASK.schema,
                "options": {"max_tokens": 16, "retries": 1},
                "escalation": {**ESCALATING, "thresholds": {"overall": 0.999}},
            }
        )
    )
    cloud = tmp_path / "cloud.toml"
    cloud.write_text('preset = "openai"\nenabled = true\n')
    m = tiny_models["smolvlm"]
    out, err = io.StringIO(), io.StringIO()
    db = tmp_path / "loupe.db"
    code = main(
        [
            "analyze",
            _image(tmp_path),
            "--task-file",
            str(task),
            "--model-path",
            str(m.text_path),
            "--mmproj",
            str(m.mmproj_path),
            "--threads",
            "1",
            "--escalate",
            "--cloud-config",
            str(cloud),
            "--db",
            str(db),
            "--json",
        ],
        out,
        err,
    )
    assert code == 0, err.getvalue()
    assert "LOUPE_OFFLINE=1 forbids sending to api.openai.com" in err.getvalue()
    (line,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert line["backend"] == "llama_cpp" and line["escalation"][-1]["step"] == "review"
    assert line["escalation"][-1]["why"].startswith("LOUPE_OFFLINE=1 forbids")
    assert no_sockets == [] and not db.exists()
