"""Loupe's own endpoints on the real server: /v1/analyze (data URL and path) stored, /v1/results paged."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
from loupe.cli import SAMPLE
from loupe.core.tasks import builtin_task
from loupe.serve.server import Running
from loupe.store import Store

from tests.serve.conftest import MODEL, data_url

GAUGE = {
    "type": "object",
    "properties": {"value": {"type": "integer", "minimum": 0, "maximum": 10}, "in_green": {"type": "boolean"}},
    "required": ["value", "in_green"],
    "additionalProperties": False,
}


def call(server: Running, path: str, body: dict | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_analyze_a_data_url_with_schema_and_instructions(server: Running) -> None:
    status, r = call(
        server,
        "/v1/analyze",
        {"image": data_url(SAMPLE), "schema": GAUGE, "instructions": "Read the gauge.", "options": {"max_tokens": 64}},
    )
    assert status == 200, r
    assert r["status"] == "ok" and r["model"] == MODEL
    jsonschema.validate(r["data"], GAUGE)
    assert set(r["confidence"]) == {"/value", "/in_green"}
    assert r["images"][0]["path"].startswith("data:image/jpeg;sha256=") and r["images"][0]["width"] == 800
    assert r["id"] > 0 and r["job_id"] > 0


def test_analyze_a_path_with_a_built_in_task_is_stored_and_paged(server: Running, tmp_path: Path) -> None:
    status, r = call(server, "/v1/analyze", {"image": str(SAMPLE), "task": "defects", "options": {"max_tokens": 400}})
    assert status == 200, r
    assert r["task"] == "defects" and r["status"] in ("ok", "truncated")  # random weights: may run out of tokens
    if r["status"] == "ok":
        jsonschema.validate(r["data"], builtin_task("defects").schema)
        assert all(len(b["pixels"]) == 4 for b in r["boxes"])
    assert r["images"][0]["path"] == str(SAMPLE)
    status, page = call(server, "/v1/results?limit=1")
    assert status == 200 and page["data"][0]["id"] == r["id"]  # newest first
    assert page["total"] >= 1 and page["limit"] == 1
    if page["total"] > 1:
        status, nxt = call(server, f"/v1/results?offset={page['next_offset']}&limit=1")
        assert nxt["data"][0]["id"] < r["id"]
    status, oks = call(server, "/v1/results?status=ok")
    assert all(x["status"] == "ok" for x in oks["data"])


def test_bad_requests_are_400_and_store_nothing(server: Running, images: dict[str, Path]) -> None:
    _, before = call(server, "/v1/results")
    cases = [
        ({"image": str(images["text_as_jpg"]), "task": "defects"}, "image", "invalid_image"),
        ({"image": "data:image/png;base64,@@@", "task": "defects"}, "image", None),
        ({"image": str(images["missing"]), "task": "defects"}, "image", "invalid_image"),
        ({"image": str(SAMPLE)}, "task", None),
        ({"image": str(SAMPLE), "task": "defects", "schema": GAUGE}, "task", None),
        ({"image": str(SAMPLE), "task": "nope"}, "task", "invalid_task"),
        ({"image": str(SAMPLE), "schema": {"type": "nope"}, "instructions": "x"}, "schema", "invalid_task"),
        ({"image": str(SAMPLE), "task": "defects", "options": {"max_tokens": 0}}, "options", "invalid_task"),
        ({"image": "http://example.com/a.jpg", "task": "defects"}, "image", "url_not_supported"),
    ]
    for body, param, code in cases:
        status, err = call(server, "/v1/analyze", body)
        assert status == 400, (body, err)
        assert err["error"]["param"] == param and err["error"]["code"] == code, err
        assert err["error"]["type"] == "invalid_request_error" and err["error"]["message"]
    status, err = call(server, "/v1/results?limit=0")
    assert status == 400 and err["error"]["param"] == "limit"
    _, after = call(server, "/v1/results")
    assert after["total"] == before["total"]


def test_an_analysis_lands_in_the_store_file_like_a_batch_result(start_server, tmp_path: Path) -> None:
    db = tmp_path / "loupe.db"
    with start_server(db=db) as running:
        status, r = call(running, "/v1/analyze", {"image": data_url(SAMPLE), "schema": GAUGE, "instructions": "Read."})
        assert status == 200
    with Store(db) as store:  # the server has stopped; the result is committed in the file
        stored = store.result(r["id"])
        assert stored.result.data == r["data"] and stored.sha256 == r["images"][0]["sha256"]
        assert store.job(r["job_id"]).state == "done" and store.job(r["job_id"]).launch["source"] == "serve"


def test_openapi_is_published(server: Running) -> None:
    status, spec = call(server, "/openapi.json")
    assert status == 200
    assert {"/v1/chat/completions", "/v1/models", "/v1/analyze", "/v1/results"} <= set(spec["paths"])
    assert "securitySchemes" not in spec.get("components", {})  # no token on this server: no auth declared


def test_an_unknown_query_parameter_is_400_naming_it(server: Running) -> None:
    status, body = call(server, "/v1/results?limt=5")
    assert status == 400 and body["error"]["param"] == "limt"
    assert "unknown query parameter 'limt' (it takes: limit, offset, status)" in body["error"]["message"]
    status, body = call(server, "/v1/models?verbose=1")
    assert status == 400 and "(it takes none)" in body["error"]["message"]
    assert call(server, "/v1/results?limit=2&offset=0")[0] == 200
