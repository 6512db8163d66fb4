"""One item's answer as a flat row (strings, numbers, bytes): what a Ray worker sends back to the driver and what
`loupe batch --ray --out DIR` writes as Parquet, so `loupe import DIR` can store it exactly as the driver would."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from loupe.core.types import ImageEmbedding, Result
from loupe.store.records import RESULT_COLUMNS, result_columns, result_from_row

# the row's own columns, then the store's result columns (loupe.store.records.RESULT_COLUMNS)
ITEM_COLUMNS = ("item_id", "path", "sha256", "size", "escalation", "phashes", "embeddings", "worker")
ROW_COLUMNS = ITEM_COLUMNS + RESULT_COLUMNS
JOB_FILE = "_loupe_job.json"  # in an --out dir: the job (task, model, settings, inputs) the rows belong to


@dataclass(frozen=True)
class ItemAnswer:
    """What one worker found for one item: its result, the file's identity, and what the store keeps beside it."""

    item_id: int
    path: str
    sha256: str | None
    size: int | None
    result: Result
    escalation: tuple[dict[str, Any], ...] = ()
    phashes: Mapping[str, int | None] | None = None  # perceptual hash per image id, computed where the image is
    worker: str = ""  # which actor answered ("node id/pid"): where the work ran, never stored in the results


def to_row(answer: ItemAnswer) -> dict[str, Any]:
    """The flat row of an answer (every value a str, int, float, bytes or None)."""
    r = answer.result
    embeddings = [
        {"image_id": e.image_id, "model": e.model, "detail": e.detail, "vector": e.vector.hex()} for e in r.embeddings
    ]
    return {
        "item_id": answer.item_id,
        "path": answer.path,
        "sha256": answer.sha256,
        "size": answer.size,
        "escalation": json.dumps(list(answer.escalation)),
        "phashes": None if answer.phashes is None else json.dumps(dict(answer.phashes)),
        "embeddings": json.dumps(embeddings),
        "worker": answer.worker,
        **dict(zip(RESULT_COLUMNS, result_columns(r), strict=True)),
        "task": r.task,
    }


def from_row(row: Mapping[str, Any]) -> ItemAnswer:
    """The answer a row was made from (to_row's inverse)."""
    result = result_from_row(row, str(row["task"]))
    vectors = tuple(
        ImageEmbedding(e["image_id"], e["model"], e["detail"], bytes.fromhex(e["vector"]))
        for e in json.loads(row["embeddings"] or "[]")
    )
    phashes = None if row["phashes"] is None else json.loads(row["phashes"])
    return ItemAnswer(
        item_id=int(row["item_id"]),
        path=str(row["path"]),
        sha256=None if row["sha256"] is None else str(row["sha256"]),
        size=None if row["size"] is None else int(row["size"]),
        result=replace(result, embeddings=vectors),
        escalation=tuple(json.loads(row["escalation"] or "[]")),
        phashes=phashes,
        worker=str(row.get("worker") or ""),
    )


def rows_to_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Rows as one column per name (a Ray Data batch, a Parquet table)."""
    names = (*ROW_COLUMNS, "task")
    return {name: [row[name] for row in rows] for name in names}
