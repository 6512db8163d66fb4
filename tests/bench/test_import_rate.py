"""bench.import_rate on a few rows: every rate is measured on a real import (each row stored, then all skipped)."""

from __future__ import annotations

from pathlib import Path

from bench.import_rate import measure


def test_import_rate_reports_each_path(tmp_path: Path) -> None:
    report = measure(30, tmp_path)
    assert report["rows"] == 30
    for key in ("import", "again", "per_row_commit"):
        assert report[key]["rows_per_s"] > 0 and report[key]["seconds"] >= 0
    assert 0 < report["peak_mb"]["import_loop"] <= report["peak_mb"]["with_review_count"]
