"""bench.search runs unattended: its exact k-NN finds a stored vector first, and every section writes its numbers."""

from __future__ import annotations

import json

import numpy as np

from bench import search


def test_the_exact_scan_returns_the_true_nearest_across_blocks():
    rng = np.random.default_rng(3)
    rows = search.unit_rows(rng, 2500, 16)
    blocks = [rows[:1000], rows[1000:2000], rows[2000:]]
    q = search.unit_rows(rng, 1, 16)[0]
    ids, scores = search.top_k(blocks, q, 5)
    want = np.argsort(-(rows @ q), kind="stable")[:5]
    assert list(ids) == list(want) and np.all(np.diff(scores) <= 0)
    assert search.top_k(blocks, rows[1500], 1)[0][0] == 1500


def test_quick_run_on_the_tiny_model_writes_every_section(tmp_path):
    out = tmp_path / "search.json"
    report = search.main(
        [
            "--quick",
            "--sizes",
            "1000,20000",
            "--dims",
            "64,128",
            "--queries",
            "2",
            "--model",
            "tiny-smolvlm",
            "--model-dir",
            str(tmp_path / "models"),
            "--threads",
            "1",
            "--max-tokens",
            "16",
            "--json",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == report
    assert [(r["dim"], r["n"]) for r in report["query"]] == [(64, 1000), (64, 20000), (128, 1000), (128, 20000)]
    assert all(r["query_ms_median"] > 0 and r["index_bytes"] == r["n"] * r["dim"] * 4 for r in report["query"])
    assert "rows" in report["sqlite_vec"] or report["sqlite_vec"]["skipped"]
    insert = report["insert"]
    assert insert["dim"] == 64 and insert["image_chunks_encoded"] >= 1
    assert 0 < insert["insert_overhead"] < 1
