"""Stored results as export rows: the data to act on (edits win), its boxes, and a flat, column-per-field view."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from loupe.core.images.boxes import degenerate, find_boxes, invalid_boxes
from loupe.core.types import Box
from loupe.export.options import ExportOptions
from loupe.store.records import StoredResult

FIXED_COLUMNS = ("job", "item", "result", "path", "sha256", "status", "min_confidence", "error", "review")


def final_boxes(stored: StoredResult) -> tuple[Box, ...]:
    """Boxes of the data to act on: the model's, re-derived from an edit, none for a rejected result; never one
    without area (results stored before such boxes were left out may still hold one)."""
    review = stored.review
    if review is None or review.decision == "accept":
        return model_boxes(stored)
    if review.decision == "reject":
        return ()
    return find_boxes(review.data, _sizes(stored))


def model_boxes(stored: StoredResult) -> tuple[Box, ...]:
    """The model's boxes that have an area in pixels."""
    return tuple(b for b in stored.result.boxes if not degenerate(b.pixels))


def _sizes(stored: StoredResult) -> dict[str, tuple[int, int]]:
    return {i.id: (i.width, i.height) for i in stored.result.images if i.width and i.height}


def notes(stored: StoredResult) -> dict[str, str]:
    """Pointer -> note for the data to act on: `box_invalid` for each `box_2d` with no area in pixels (not exported
    as a box; the pipeline gave its numbers confidence 0, which sent the result to review)."""
    return {b.pointer: "box_invalid" for b in invalid_boxes(stored.final_data, _sizes(stored))}


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
        boxes=[asdict(b) for b in model_boxes(stored)],
        notes=notes(stored),
    )
    if stored.review is not None and stored.review.decision == "edit":
        out["model_data"] = out["data"]
        out["data"] = stored.review.data
        out["boxes"] = [asdict(b) for b in final_boxes(stored)]
    return out


def escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def flatten(value: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    """(JSON Pointer, value) for every leaf: objects by key, arrays by index (`/defects/0/label`); an empty object
    or array is a leaf of its own, as JSON text (`{}`, `[]`), so that it differs from a missing one."""
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from flatten(child, f"{pointer}/{escape(str(key))}")
    elif isinstance(value, list) and value:
        for i, child in enumerate(value):
            yield from flatten(child, f"{pointer}/{i}")
    elif isinstance(value, dict | list):
        yield pointer or "/", json.dumps(value, ensure_ascii=False)
    else:
        yield pointer or "/", value


def fixed_row(stored: StoredResult) -> dict[str, Any]:
    """The columns every tabular export starts with (FIXED_COLUMNS)."""
    r = stored.result
    return dict(
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


def flat_row(stored: StoredResult) -> dict[str, Any]:
    """One CSV row: fixed columns, then one column per data leaf (named by its JSON Pointer)."""
    row = fixed_row(stored)
    row.update(flatten(stored.final_data) if stored.final_data is not None else ())
    return row


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every column, fixed ones first, then data pointers grouped as a tree: keys in order of first appearance,
    array indexes in numeric order (`/a/0/x`, `/a/0/y`, `/a/1/x`, ..., `/a/10/x`, then `/b`)."""
    tree: dict[str | None, Any] = {}
    for row in rows:
        for name in row:
            if name in FIXED_COLUMNS:
                continue
            node = tree
            for part in name.split("/")[1:]:
                node = node.setdefault(part, {})
            node[None] = name  # a leaf here (an empty object or array in one row, a parent in another)

    def leaves(node: dict[str | None, Any]) -> Iterator[str]:
        if None in node:
            yield node[None]
        keys = [k for k in node if k is not None]
        if keys and all(k.isdigit() for k in keys):
            keys.sort(key=int)
        for k in keys:
            yield from leaves(node[k])

    return [*FIXED_COLUMNS, *leaves(tree)]


@contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Write to PATH.part, then rename over PATH: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with open(part, mode, **kwargs) as f:
        yield f
    os.replace(part, path)


Writer = Callable[[list[StoredResult], Path, ExportOptions], int]
