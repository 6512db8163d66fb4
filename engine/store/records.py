"""What the store hands out (frozen records) and how a Result, a task and a cache key become columns."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from loupe.core.tasks import Task, TaskOptions
from loupe.core.types import Box, ImageInfo, Result, Status, Timings, Tokens

JOB_STATES = ("running", "interrupted", "done")
DECISIONS = ("accept", "edit", "reject")


def now() -> str:
    """An ISO-8601 UTC timestamp with milliseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def dumps(value: Any) -> str:
    """Compact, key-sorted JSON (stable, so it can be hashed and compared)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(*parts: str) -> str:
    """sha256 hex of the parts, separated so that ("ab", "c") and ("a", "bc") differ."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def task_to_dict(task: Task) -> dict[str, Any]:
    """Everything a stored job needs to rebuild its task."""
    return {
        "name": task.name,
        "description": task.description,
        "source": task.source,
        "schema": task.schema,
        "instructions": task.instructions,
        "options": asdict(task.options),
        "escalation": task.escalation,
        "verdict": task.verdict,
        "outputs": task.outputs,
    }


def task_from_dict(raw: dict[str, Any]) -> Task:
    """The task a job was recorded with (already checked when the job was made)."""
    known = {f.name for f in fields(TaskOptions)}
    options = TaskOptions(**{k: v for k, v in raw.get("options", {}).items() if k in known})
    return Task(
        name=raw["name"],
        schema=raw["schema"],
        instructions=raw["instructions"],
        options=options,
        description=raw.get("description", ""),
        source=raw.get("source", "<stored>"),
        escalation=raw.get("escalation"),
        verdict=raw.get("verdict"),
        outputs=raw.get("outputs"),
    )


def task_key(task: Task) -> str:
    """What makes two tasks give the same answer: schema + instructions + options (not the name). Options added
    later count only when set otherwise than their default, so the jobs and cached results stored before keep
    their keys."""
    options = asdict(task.options)
    for name, default in _LATER_OPTIONS.items():
        if options.get(name) == default:
            del options[name]
    return digest(dumps(task.schema), task.instructions, dumps(options))


_LATER_OPTIONS = {"format": "assertion"}  # options added after stores held jobs, with their defaults


def cache_key(image_sha256: str, task_key_: str, model: str, settings_key: str) -> str:
    """Identical image bytes + task + model + settings: the same result, answered from the store."""
    return digest(image_sha256, task_key_, model, settings_key)


@dataclass(frozen=True)
class JobRecord:
    """One batch: the task and model it runs, how it was launched, and where it stands."""

    id: int
    key: str
    task: Task
    task_key: str
    model: str
    settings: dict[str, Any]
    launch: dict[str, Any]
    created: str
    updated: str
    state: str

    @property
    def settings_key(self) -> str:
        """The settings as a hash, for cache keys."""
        return digest(dumps(self.settings))


@dataclass(frozen=True)
class ItemRecord:
    """One image of a job (path as given, absolute); sha256/size are known once it is processed."""

    id: int
    job_id: int
    seq: int
    path: str
    sha256: str | None
    size: int | None
    state: str


@dataclass(frozen=True)
class ReviewRecord:
    """A person's decision on a result; for `edit`, the corrected data."""

    id: int
    result_id: int
    decision: str
    data: Any
    note: str
    who: str
    at: str


@dataclass(frozen=True)
class StoredResult:
    """A result as stored, with its item, whether it came from the cache, and its latest review."""

    id: int
    job_id: int
    item_id: int
    path: str
    sha256: str | None
    result: Result
    cached_from: int | None
    escalation: tuple[Any, ...]
    created: str
    review: ReviewRecord | None = None

    @property
    def final_data(self) -> Any:
        """The data to act on: a person's edit wins over the model's answer."""
        if self.review is not None and self.review.decision == "edit":
            return self.review.data
        return self.result.data


RESULT_COLUMNS = (
    "status",
    "data",
    "confidence",
    "min_confidence",
    "boxes",
    "images",
    "raw",
    "timings",
    "tokens",
    "attempts",
    "error",
    "model",
    "backend",
    "model_confidence",
)


def result_columns(result: Result) -> tuple[Any, ...]:
    """A Result as values for RESULT_COLUMNS."""
    d = result.to_dict()
    return (
        d["status"],
        None if result.data is None else dumps(result.data),
        dumps(d["confidence"]),
        result.min_confidence,
        dumps(d["boxes"]),
        dumps(d["images"]),
        result.raw,
        dumps(d["timings"]),
        dumps(d["tokens"]),
        result.attempts,
        result.error,
        result.model,
        result.backend,
        dumps(d["model_confidence"]),
    )


def result_from_row(row: Any, task_name: str) -> Result:
    """Rebuild the Result a row was made from (`row` maps RESULT_COLUMNS to values)."""
    images = tuple(ImageInfo(**{**i, "transforms": tuple(i.get("transforms", ()))}) for i in json.loads(row["images"]))
    boxes = tuple(
        Box(**{**b, "box_2d": tuple(b["box_2d"]), "pixels": tuple(b["pixels"])}) for b in json.loads(row["boxes"])
    )
    return Result(
        status=Status(row["status"]),
        task=task_name,
        model=row["model"],
        backend=row["backend"],
        images=images,
        data=None if row["data"] is None else json.loads(row["data"]),
        raw=row["raw"],
        confidence=json.loads(row["confidence"]),
        boxes=boxes,
        timings=Timings(**json.loads(row["timings"])),
        tokens=Tokens(**json.loads(row["tokens"])),
        attempts=row["attempts"],
        error=row["error"],
        model_confidence=json.loads(row["model_confidence"]),
    )
