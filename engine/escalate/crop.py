"""Crop rungs: run a step on each box region the previous step found, then merge the answers in image coordinates.

Merging is generic over schemas: each region's boxes are mapped back to the whole image; where the answers are
objects, their top-level arrays are concatenated in region order (cut back to the schema's `maxItems`, keeping
the most confident items) and every other value comes from the first region; the merged answer is validated
against the task's schema again (a merge that still breaks it is `invalid`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from loupe.core.images.boxes import BOX_KEY, find_boxes, flag_invalid
from loupe.core.images.crops import CropWindow, cut, window
from loupe.core.images.load import LoadedImage
from loupe.core.schema.validate import validation_errors
from loupe.core.tasks import Task
from loupe.core.types import Result, Status
from loupe.escalate.base import StepRunner

MAX_PROBLEM = 160  # characters of a schema problem quoted in a step's note


@dataclass(frozen=True)
class Region:
    """One crop to look at: the window in its source image, and the crop as an image of its own."""

    window: CropWindow
    image: LoadedImage
    source_size: tuple[int, int]


def regions(previous: Result, images: Sequence[LoadedImage]) -> list[Region]:
    """A crop around every box of `previous` (boxes name their image by id; ids follow the images' order).

    Boxes that give the same window are looked at once (the first one names it).
    """
    ids = [info.id for info in previous.images]
    out: list[Region] = []
    seen: set[tuple[str, int, int, int, int]] = set()
    for n, box in enumerate(previous.boxes, 1):
        idx = ids.index(box.image_id) if box.image_id in ids else 0
        if idx >= len(images):
            continue
        src = images[idx]
        win = window(box.pixels, src.size, image_id=box.image_id, source=box.pointer)
        key = (win.image_id, win.x0, win.y0, win.x1, win.y1)
        if key in seen:
            continue
        seen.add(key)
        crop = LoadedImage(
            f"{src.path}#crop{n}",
            cut(src.image, win),
            src.sha256,
            src.format,
            (*src.transforms, f"crop {win.x0},{win.y0},{win.x1},{win.y1}"),
        )
        out.append(Region(win, crop, src.size))
    return out


def _remap(value: Any, region: Region) -> Any:
    """`value` with every `box_2d` mapped from the crop to the whole image (and `image_id`s to the source's)."""
    if isinstance(value, dict):
        out = {k: _remap(v, region) for k, v in value.items()}
        box = out.get(BOX_KEY)
        if (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
        ):
            out[BOX_KEY] = region.window.box_to_image(box, region.source_size)
        if "image_id" in out:
            out["image_id"] = region.window.image_id
        return out
    if isinstance(value, list):
        return [_remap(v, region) for v in value]
    return value


def _merge(answers: list[tuple[Any, dict[str, float]]]) -> tuple[Any, dict[str, float]]:
    """One answer from several: top-level arrays concatenated (confidence pointers re-indexed), else the first's."""
    data, conf = answers[0]
    if not isinstance(data, dict):
        return data, dict(conf)
    merged: dict[str, Any] = dict(data)
    confidence = dict(conf)
    for other, other_conf in answers[1:]:
        if not isinstance(other, dict):
            continue
        for key, value in other.items():
            if not (isinstance(value, list) and isinstance(merged.get(key), list)):
                continue
            base, prefix = len(merged[key]), f"/{key}/"
            merged[key] = [*merged[key], *value]
            for ptr, c in other_conf.items():
                if ptr.startswith(prefix):
                    index, _, rest = ptr[len(prefix) :].partition("/")
                    if index.isdigit():
                        confidence[f"{prefix}{int(index) + base}" + (f"/{rest}" if rest else "")] = c
    return merged, confidence


def _cap(data: Any, confidence: dict[str, float], schema: Any) -> tuple[Any, dict[str, float]]:
    """Top-level arrays cut back to their schema's `maxItems`, keeping the most confident items in region order.

    Several regions may each find up to `maxItems` things; their union is still one answer to the same schema.
    """
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    if not isinstance(data, dict) or not isinstance(props, dict):
        return data, confidence
    data, confidence = dict(data), dict(confidence)
    for key, value in list(data.items()):
        limit = props.get(key, {}).get("maxItems") if isinstance(props.get(key), dict) else None
        if not isinstance(value, list) or not isinstance(limit, int) or len(value) <= limit:
            continue
        prefix = f"/{key}/"

        scores = [
            min((c for p, c in confidence.items() if p == f"{prefix}{i}" or p.startswith(f"{prefix}{i}/")), default=1.0)
            for i in range(len(value))
        ]
        keep = sorted(sorted(range(len(value)), key=lambda i: -scores[i])[:limit])
        data[key] = [value[i] for i in keep]
        moved = {}
        for ptr, c in confidence.items():
            if not ptr.startswith(prefix):
                moved[ptr] = c
                continue
            index, _, rest = ptr[len(prefix) :].partition("/")
            if index.isdigit() and int(index) in keep:
                moved[f"{prefix}{keep.index(int(index))}" + (f"/{rest}" if rest else "")] = c
        confidence = moved
    return data, confidence


def run_crops(
    runner: StepRunner, task: Task, previous: Result, found: Sequence[Region], *, cancel: threading.Event | None = None
) -> tuple[Result, float, int]:
    """Run `runner` once per region and merge: (result in whole-image coordinates, USD spent, requests sent)."""
    cost, calls, answers, failed = 0.0, 0, [], None
    first: Result | None = None
    for region in found:
        result, c, n = runner.run(task, [region.image], cancel=cancel)
        cost, calls = cost + c, calls + n
        first = first or result
        if result.status is Status.OK:
            answers.append((_remap(result.data, region), result.confidence))
        elif failed is None:
            failed = (region, result)
        if cancel is not None and cancel.is_set():
            break
    assert first is not None, "run_crops needs at least one region"
    if not answers:
        return replace(first, images=previous.images, boxes=()), cost, calls
    data, confidence = _cap(*_merge(answers), task.schema)
    status, error = Status.OK, None
    problems = validation_errors(task.schema, data, formats=task.options.format)
    if problems:
        status, error = Status.INVALID, f"merged regions break the schema: {problems[0][:MAX_PROBLEM]}"
    elif failed is not None:
        region, bad = failed
        status, error = bad.status, f"region {region.window.source}: {bad.error or bad.status.value}"
    sizes = {info.id: (info.width, info.height) for info in previous.images}
    confidence = flag_invalid(confidence, data, sizes)  # a merged box with no area reads as unsure, like any
    return (
        replace(
            first,
            status=status,
            images=previous.images,
            data=data,
            raw=json.dumps(data),
            confidence=confidence,
            boxes=find_boxes(data, sizes, confidence),
            attempts=len(found),
            error=error,
        ),
        cost,
        calls,
    )
