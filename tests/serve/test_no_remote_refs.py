"""`loupe serve` never fetches a `$ref`: /v1/analyze with each trick of tests/engine/test_no_remote_refs.py, as an
inline schema and as a task_file, against a counting HTTP listener on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

from tests.engine.test_no_remote_refs import listener, tricks  # noqa: F401  (listener is a fixture)


def test_through_loupe_serve_neither_schema_nor_task_file_fetches(listener, server, tmp_path: Path):  # noqa: F811
    from loupe.cli import SAMPLE

    from tests.serve.conftest import data_url
    from tests.serve.test_analyze_results import call

    base, hits = listener
    for name, schema in tricks(base).items():
        status, r = call(
            server,
            "/v1/analyze",
            {"image": data_url(SAMPLE), "schema": schema, "instructions": "x", "options": {"max_tokens": 8}},
        )
        assert status != 500 and "FETCHED" not in json.dumps(r), (name, status, r)
        task_file = tmp_path / f"t{len(hits)}.json"
        task_file.write_text(json.dumps({"name": "t", "schema": schema, "instructions": "x"}))
        status, r = call(
            server,
            "/v1/analyze",
            {"image": data_url(SAMPLE), "task_file": str(task_file), "options": {"max_tokens": 8}},
        )
        assert status != 500 and "FETCHED" not in json.dumps(r), (name, status, r)
    assert hits == []
