"""The ladder against a real OpenAI-compatible server: `llama_cpp.server` on 127.0.0.1 with a tiny synthetic model.

The server serves the model with its mmproj (chat_format `mtmd`, so the image really is decoded by its vision tower).

The served model has random weights: what it answers is meaningless, but its grammar (from our `json_object`
schema) keeps the answer valid JSON, so the test checks the plumbing: what is sent, answered, stored, audited.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import loupe.core.secrets
import pytest
from loupe.cli import main
from loupe.escalate.audit import audit_rows
from loupe.models.synthetic import SyntheticModel
from loupe.store.sqlite import Store
from PIL import Image

from tests.hybrid.llama_server import LlamaServer
from tests.noise import noise_image

TWO = {
    "type": "object",
    "properties": {"label": {"enum": ["cat", "dog"]}},
    "required": ["label"],
    "additionalProperties": False,
}
ONE = {**TWO, "properties": {"label": {"enum": ["cat"]}}}  # one answer: the tiny model is sure of it (1.0)


@pytest.fixture(autouse=True)
def _no_real_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loupe.core.secrets, "_default_keyring", lambda: None)
    monkeypatch.delenv("LOUPE_CLOUD_CONFIG", raising=False)


def _files(tmp_path: Path, server: LlamaServer, schema: dict[str, Any]) -> tuple[Path, Path, Path]:
    task = tmp_path / "pet.json"
    task.write_text(
        json.dumps(
            {
                "name": "pet",
                "instructions": "Which animal is this?",
                "schema": schema,
                "options": {"max_tokens": 64, "review_threshold": 0.5, "retries": 1},
                "escalation": {"ladder": ["local@low", "cloud@high"], "thresholds": {"overall": 0.9}, "cloud": True},
            }
        )
    )
    cloud = tmp_path / "cloud.toml"
    cloud.write_text(
        f'preset = "llama_cpp_python"\nbase_url = "{server.base_url}"\nmodel = "{server.alias}"\n'
        "enabled = true\nmax_side = 64\ntimeout_s = 60.0\nmax_retries = 0\n"
        "price_in_per_mtok = 1.0\nprice_out_per_mtok = 2.0\n"
    )
    folder = tmp_path / "imgs"
    folder.mkdir()
    noise_image((32, 24), 5).save(folder / "a.png")
    return task, cloud, folder


def _batch(
    tiny_models: dict[str, SyntheticModel], server: LlamaServer, tmp_path: Path, schema: dict[str, Any]
) -> tuple[dict, Path]:
    """`loupe batch --escalate` over one image with the task for `schema`: (the JSON summary, the database)."""
    task, cloud, folder = _files(tmp_path, server, schema)
    db = tmp_path / "loupe.db"
    m = tiny_models["smolvlm"]
    out, err = io.StringIO(), io.StringIO()
    code = main(
        [
            "batch",
            str(folder),
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
    assert f"may be sent to {server.base_url}" in err.getvalue()
    return json.loads(out.getvalue()), db


def test_low_confidence_result_escalates_to_llama_cpp_server_and_is_audited(
    llama_server: LlamaServer, tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    before = llama_server.chat_requests()
    summary, db = _batch(tiny_models, llama_server, tmp_path, TWO)
    assert llama_server.wait_chat_requests(before + 1) == before + 1
    with Store(db) as store:
        (stored,) = store.results(summary["job"])
        first, second = stored.escalation
        assert first["runner"] == "local" and first["outcome"] == "escalated" and first["min_confidence"] < 0.9
        assert second["runner"] == "cloud" and second["outcome"] == "accepted" and second["calls"] == 1
        assert stored.result.backend == "cloud" and stored.result.model == llama_server.alias
        assert stored.result.data["label"] in ("cat", "dog") and stored.result.status.value == "ok"
        (row,) = audit_rows(store, job_id=summary["job"])
        assert row["destination"] == f"127.0.0.1:{llama_server.port}" and row["status"] == 200
        assert row["model"] == llama_server.alias and row["source_sha256"] == [stored.sha256]
        assert row["prompt_tokens"] > 0 and row["fields"] == ["label"] and row["cost_usd"] > 0
        assert row["bytes_out"] > 100 and row["bytes_in"] > 0 and len(row["image_sha256"]) == 1


def test_confident_result_stays_local_and_nothing_reaches_the_server(
    llama_server: LlamaServer, tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    before = llama_server.chat_requests()
    summary, db = _batch(tiny_models, llama_server, tmp_path, ONE)
    with Store(db) as store:
        (stored,) = store.results(summary["job"])
        assert [(s["runner"], s["outcome"]) for s in stored.escalation] == [("local", "accepted")]
        assert stored.result.backend == "llama_cpp" and stored.result.min_confidence == 1.0
        assert audit_rows(store) == []
    assert llama_server.chat_requests() == before


def test_llama_cpp_server_refuses_openai_json_schema_so_the_preset_sends_json_object(llama_server: LlamaServer) -> None:
    """Why the `llama_cpp_python` preset exists: this server answers type json_schema with an HTTP 500."""
    body = {
        "model": llama_server.alias,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": TWO}},
    }
    req = urllib.request.Request(
        llama_server.base_url + "/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 500 and b"json_object" in info.value.read()


def test_the_server_really_decodes_the_image(llama_server: LlamaServer) -> None:
    """With chat_format `mtmd` the image becomes prompt tokens on the server (text-only would not grow)."""
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    def prompt_tokens(content: list[dict[str, Any]]) -> int:
        body = {"model": llama_server.alias, "messages": [{"role": "user", "content": content}], "max_tokens": 1}
        req = urllib.request.Request(
            llama_server.base_url + "/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(json.loads(resp.read())["usage"]["prompt_tokens"])

    text = [{"type": "text", "text": "img_01: "}, {"type": "text", "text": "Which animal is this?"}]
    with_image = [text[0], {"type": "image_url", "image_url": {"url": url}}, text[1]]
    assert prompt_tokens(with_image) > prompt_tokens(text) + 4
