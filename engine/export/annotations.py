"""Boxes in the annotation tools' own conventions: COCO (pixel [x, y, w, h]) and Label Studio (percent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loupe.core.types import Box, ImageInfo
from loupe.export.rows import atomic_open, final_boxes
from loupe.store.records import StoredResult

DEFAULT_LABEL = "object"


def _image(stored: StoredResult) -> ImageInfo | None:
    """The item's image, when the engine could read it (errors have no size)."""
    info = stored.result.images[0] if stored.result.images else None
    return info if info is not None and info.width > 0 and info.height > 0 else None


def _own(boxes: tuple[Box, ...], info: ImageInfo) -> list[Box]:
    return [b for b in boxes if b.image_id == info.id]


def coco(results: list[StoredResult]) -> dict[str, Any]:
    """A COCO detection document: one image per readable item, categories from the box labels."""
    kept = [(s, info) for s in results if (info := _image(s)) is not None]
    labels = sorted({b.label or DEFAULT_LABEL for s, info in kept for b in _own(final_boxes(s), info)})
    category = {name: i for i, name in enumerate(labels, start=1)}
    images, annotations = [], []
    for s, info in kept:
        images.append({"id": s.item_id, "file_name": s.path, "width": info.width, "height": info.height})
        for b in _own(final_boxes(s), info):
            x0, y0, x1, y1 = b.pixels
            ann = {
                "id": len(annotations) + 1,
                "image_id": s.item_id,
                "category_id": category[b.label or DEFAULT_LABEL],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
            }
            if b.confidence is not None:
                ann["score"] = b.confidence
            annotations.append(ann)
    return {
        "info": {"description": "Loupe export (pixels of the upright image: EXIF orientation applied)"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": DEFAULT_LABEL} for name, i in category.items()],
    }


def _regions(boxes: list[Box], info: ImageInfo) -> list[dict[str, Any]]:
    w, h = info.width, info.height
    regions = []
    for n, b in enumerate(boxes, start=1):
        x0, y0, x1, y1 = b.pixels
        region: dict[str, Any] = {
            "id": f"r{n}",
            "type": "rectanglelabels",
            "from_name": "label",
            "to_name": "image",
            "original_width": w,
            "original_height": h,
            "image_rotation": 0,
            "value": {
                "x": 100 * x0 / w,
                "y": 100 * y0 / h,
                "width": 100 * (x1 - x0) / w,
                "height": 100 * (y1 - y0) / h,
                "rotation": 0,
                "rectanglelabels": [b.label or DEFAULT_LABEL],
            },
        }
        if b.confidence is not None:
            region["score"] = b.confidence
        regions.append(region)
    return regions


def labelstudio(results: list[StoredResult]) -> list[dict[str, Any]]:
    """Label Studio tasks: the model's boxes as predictions, a person's accepted or edited boxes as annotations."""
    tasks = []
    for s in results:
        info = _image(s)
        if info is None:
            continue
        task: dict[str, Any] = {
            "id": s.item_id,
            "data": {"image": s.path, "loupe_result": s.id, "loupe_status": s.result.status.value},
            "predictions": [
                {
                    "model_version": s.result.model,
                    "score": s.result.min_confidence,
                    "result": _regions(_own(s.result.boxes, info), info),
                }
            ],
        }
        if s.review is not None and s.review.decision != "reject":
            task["annotations"] = [{"result": _regions(_own(final_boxes(s), info), info)}]
            task["data"]["loupe_review"] = {"decision": s.review.decision, "who": s.review.who, "at": s.review.at}
        tasks.append(task)
    return tasks


def write_coco(results: list[StoredResult], out: Path) -> int:
    """COCO JSON file; returns the number of images."""
    doc = coco(results)
    with atomic_open(out, encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
    return len(doc["images"])


def write_labelstudio(results: list[StoredResult], out: Path) -> int:
    """Label Studio import JSON file; returns the number of tasks."""
    tasks = labelstudio(results)
    with atomic_open(out, encoding="utf-8") as f:
        json.dump(tasks, f, ensure_ascii=False, indent=1)
    return len(tasks)
