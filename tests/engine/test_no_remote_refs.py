"""No `$ref` trick makes Loupe fetch anything: a real HTTP listener on 127.0.0.1 counts the requests it gets, and
every schema below goes through task loading, validation after decoding, a review edit's validation and
`loupe serve`'s /v1/analyze (schema and task_file)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from loupe.core.errors import TaskError
from loupe.core.schema.validate import schema_problem, validation_errors
from loupe.core.tasks import load_task_file


class _Counting(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # what a fetched schema would get: something that accepts anything
        _Counting.hits.append(self.path)
        body = json.dumps({"type": "string", "description": "FETCHED"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/schema+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    _Counting.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Counting.hits
    finally:
        server.shutdown()
        server.server_close()


def tricks(base: str) -> dict[str, dict]:
    return {
        "plain remote": {"type": "object", "properties": {"a": {"$ref": f"{base}/a.json"}}},
        "$ref under the schema's own $id": {
            "$id": f"{base}/",
            "type": "object",
            "properties": {"a": {"$ref": f"{base}/evil.json"}},
        },
        "relative to the $id": {
            "$id": f"{base}/dir/root.json",
            "type": "object",
            "properties": {"a": {"$ref": "evil.json"}},
        },
        "a subschema with its own $id": {
            "type": "object",
            "properties": {"a": {"$id": f"{base}/sub.json", "type": "string"}, "b": {"$ref": f"{base}/evil2.json"}},
        },
        "nested $id, relative $ref": {
            "type": "object",
            "properties": {
                "b": {"$id": f"{base}/nested/x.json", "type": "object", "properties": {"c": {"$ref": "evil3.json"}}}
            },
        },
        "root $ref": {"$id": f"{base}/r.json", "$ref": f"{base}/evil4.json"},
    }


def test_no_ref_trick_reaches_the_network_at_load_or_validation(listener, tmp_path: Path):
    base, hits = listener
    for name, schema in tricks(base).items():
        problem = schema_problem(schema)
        task_file = tmp_path / "task.json"
        task_file.write_text(json.dumps({"name": "t", "schema": schema, "instructions": "x"}))
        try:
            load_task_file(task_file)
        except TaskError as exc:
            assert "\n" not in str(exc), name
        else:
            assert problem is None, name
        for instance in ({"a": "x", "b": "x"}, {"b": {"c": 1}}, 1, "x"):
            errors = validation_errors(schema, instance)
            assert all("FETCHED" not in e for e in errors), (name, errors)
        assert hits == [], f"{name}: fetched {hits}"


def test_a_schema_that_points_outside_is_refused_when_the_task_loads(listener):
    base, hits = listener
    refused = [name for name, schema in tricks(base).items() if schema_problem(schema) is not None]
    # the nested-$id ones resolve only against their own base: checked (and never satisfied) when validating
    assert {"plain remote", "$ref under the schema's own $id", "relative to the $id", "root $ref"} <= set(refused)
    assert hits == []
