"""Stored results as export rows: the data to act on (edits win), its boxes, and a flat, column-per-field view."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from loupe.core.images.boxes import find_boxes
from loupe.core.types import Box
from loupe.store.records import StoredResult

FIXED_COLUMNS = ("job", "item", "result", "path", "sha256", "status", "min_confidence", "error", "review")


def final_boxes(stored: StoredResult) -> tuple[Box, ...]:
    """Boxes of the data to act on: the model's, re-derived from an edit, none for a rejected result."""
    review = stored.review
    if review is None or review.decision == "accept":
        return stored.result.boxes
    if review.decision == "reject":
        return ()
    sizes = {i.id: (i.width, i.height) for i in stored.result.images if i.width and i.height}
    return find_boxes(review.data, sizes)


def record(stored: StoredResult) -> dict[str, Any]:
    """The full JSON record of a stored result (a JSONL line): the Result's fields plus item and review."""
    out = stored.result.to_dict()
    out.update(
        job=stored.job_id,
        item=stored.item_id,
        result=stored.id,
        path=stored.path,
        sha256=stored.sha256,
        min_confidence=stored.result.min_confidence,
        cached=stored.cached_from is not None,
        escalation=list(stored.escalation),
        review=None if stored.review is None else asdict(stored.review),
    )
    if stored.review is not None and stored.review.decision == "edit":
        out["model_data"] = out["data"]
        out["data"] = stored.review.data
        out["boxes"] = [asdict(b) for b in final_boxes(stored)]
    return out


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def flatten(value: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    """(JSON-Pointer-like column, value) for every leaf of nested objects; lists stay whole, as JSON text."""
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from flatten(child, f"{pointer}/{_escape(str(key))}")
    elif isinstance(value, dict | list):
        yield pointer or "/", json.dumps(value, ensure_ascii=False)
    else:
        yield pointer or "/", value


def flat_row(stored: StoredResult) -> dict[str, Any]:
    """One row for CSV/Parquet: fixed columns, then one column per data leaf (named by its pointer)."""
    r = stored.result
    row: dict[str, Any] = dict(
        zip(
            FIXED_COLUMNS,
            (
                stored.job_id,
                stored.item_id,
                stored.id,
                stored.path,
                stored.sha256,
                r.status.value,
                r.min_confidence,
                r.error,
                stored.review.decision if stored.review else None,
            ),
            strict=True,
        )
    )
    row.update(flatten(stored.final_data) if stored.final_data is not None else ())
    return row


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every column, fixed ones first, then data columns in order of first appearance."""
    seen = dict.fromkeys(FIXED_COLUMNS)
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


@contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Write to PATH.part, then rename over PATH: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with open(part, mode, **kwargs) as f:
        yield f
    os.replace(part, path)


Writer = Callable[[list[StoredResult], Path], int]
