"""A factory-floor line built from plain settings: `loupe watch`, `loupe kiosk` and the kiosk app share this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loupe.api import Engine
from loupe.core.errors import LoupeError, TaskError
from loupe.floor.line import Line, LineEvents
from loupe.floor.outputs.config import build_sinks, outputs_from_dict
from loupe.floor.outputs.delivery import Delivery
from loupe.floor.sources import open_source
from loupe.taskfile import TaskFile


class LineSettingsError(LoupeError):
    """A line setting that cannot work (e.g. an output URL given on the command line)."""


@dataclass(frozen=True)
class LineSettings:
    """Where images come from, what is done with them, and where results go."""

    source: str  # a folder, a camera index, an rtsp:// or http:// URL, or a video file
    job: TaskFile
    db: Path
    frames: Path | None = None  # camera: where grabbed frames are saved (default: beside the db)
    after: str = "move"  # a judged file in a watched folder: "move" to processed/ or "mark" it done
    settle_s: float = 1.0
    poll: bool = False
    interval_s: float = 1.0
    trigger: bool = False


def with_outputs(job: TaskFile, *, mqtt: str | None = None, webhook: str | None = None, drop: bool = False) -> TaskFile:
    """The task's `outputs` table with an MQTT URL, a webhook URL and file drops added (checked like a task
    file's)."""
    if not (mqtt or webhook or drop):
        return job
    raw: dict[str, Any] = dict(job.task.outputs or {})
    if mqtt:
        parts = urlsplit(mqtt)
        topic = {"topic": parts.path.lstrip("/")} if parts.path.strip("/") else {}
        raw["mqtt"] = {"url": f"{parts.scheme}://{parts.netloc}", **topic}
    if webhook:
        raw["webhook"] = {"url": webhook}
    if drop:
        raw["file"] = {}
    try:
        config = outputs_from_dict(raw, "command line")
    except TaskError as exc:
        where = f" at /outputs{exc.pointer}" if exc.pointer else ""
        raise LineSettingsError(f"outputs: {exc.problem}{where}") from None
    return replace(job, task=replace(job.task, outputs=raw), outputs=config)


def build_line(
    settings: LineSettings,
    load: Callable[[], Engine],
    model: str,
    events: LineEvents,
    *,
    retry_model: bool = True,
    allow_missing: bool = False,
) -> tuple[Line, Delivery | None]:
    """The Line (and its output delivery, if the task has outputs); neither is started."""
    frames = settings.frames or settings.db.parent / "frames"
    source = open_source(
        settings.source,
        frames_dir=frames,
        after=settings.after,
        settle_s=settings.settle_s,
        poll=settings.poll,
        interval_s=settings.interval_s,
        trigger=settings.trigger,
        allow_missing=allow_missing,
    )
    job = settings.job
    delivery = None
    if job.outputs.sinks:
        delivery = Delivery(settings.db, build_sinks(job.outputs), max_backoff_s=job.outputs.max_backoff_s)
    line = Line(
        source=source,
        task=job.task,
        rules=job.rules,
        outputs=job.outputs,
        db_path=settings.db,
        load=load,
        model=model,
        events=events,
        delivery=delivery,
        retry_model=retry_model,
    )
    return line, delivery
