"""GET /v1/search on a real server (127.0.0.1, a free port) over the hand-made store: the same rows as the CLI,
guarded by the token, unknown parameters and bad expressions refused with 400, documented in the OpenAPI spec."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from loupe.api import Engine
from loupe.backends.fake import FakeBackend
from loupe.cli.main import main
from loupe.serve.config import ServeConfig
from loupe.serve.server import Running, serve_in_thread
from loupe.serve.worker import Workers

from tests.search.conftest import Made, make_store

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Made, Running]]:
    made = make_store(tmp_path_factory.mktemp("search-api"))
    workers = Workers(Engine(FakeBackend([]), model="fake"), made.db)
    with serve_in_thread(workers, ServeConfig(host="127.0.0.1", port=0, token=TOKEN)) as running:
        yield made, running


def get(running: Running, path: str, token: str | None = TOKEN, **query: object) -> tuple[int, dict]:
    url = running.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def cli_rows(db: Path, *args: str) -> list[dict]:
    out = io.StringIO()
    assert main(["search", *args, "--db", str(db), "--json"], out=out, err=io.StringIO()) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_api_returns_the_same_rows_as_the_cli(served: tuple[Made, Running]) -> None:
    made, running = served
    for query, argv in (
        ({"where": "/defects/*/label = crack"}, ["--where", "/defects/*/label = crack"]),
        ({"text": "acme"}, ["--text", "acme"]),
        ({"dupes": "true"}, ["--dupes"]),
        ({"like": made.ids["a"], "limit": 3}, ["--like", str(made.ids["a"]), "--limit", "3"]),
        ({"where": "/total > 50", "text": "hardware"}, ["--where", "/total > 50", "--text", "hardware"]),
    ):
        status, body = get(running, "/v1/search", **query)
        assert status == 200, body
        assert body["data"] == cli_rows(made.db, *argv) and body["data"], query
    assert get(running, "/v1/search", like=made.ids["a"])[1]["data"][0]["result_id"] == made.ids["a"]


def test_the_api_refuses_what_it_cannot_answer(served: tuple[Made, Running]) -> None:
    _, running = served
    assert get(running, "/v1/search", token=None, text="acme")[0] == 401
    assert get(running, "/v1/search", token="wrong", text="acme")[0] == 401
    status, body = get(running, "/v1/search", txt="acme")
    assert status == 400 and "unknown query parameter 'txt'" in body["error"]["message"]
    status, body = get(running, "/v1/search", where="merchant acme")
    assert status == 400 and body["error"]["param"] == "where"
    status, body = get(running, "/v1/search", like=999)
    assert status == 400 and "no result 999" in body["error"]["message"]
    assert get(running, "/v1/search")[0] == 400
    status, spec = get(running, "/openapi.json")
    params = {p["name"] for p in spec["paths"]["/v1/search"]["get"]["parameters"]}
    assert params == {"like", "dupes", "where", "text", "limit"}
