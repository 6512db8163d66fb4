"""Boxes in the annotation tools' own conventions: COCO (pixel [x, y, w, h]) and Label Studio (percent).

Both take their label list from the task's schema (the enum of the label beside `box_2d`, in schema order), then any
other label the results hold: COCO category ids and Label Studio's `<Label>`s stay the same from one export to the
next. Image paths are relative to a stated root (`ExportOptions.image_root`, else the images' common folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from loupe.core.types import Box, ImageInfo
from loupe.export.options import ExportOptions, common_root, relative
from loupe.export.rows import atomic_open, final_boxes, model_boxes
from loupe.store.records import StoredResult

DEFAULT_LABEL = "object"


def _image(stored: StoredResult) -> ImageInfo | None:
    """The item's image, when the engine could read it (errors have no size)."""
    info = stored.result.images[0] if stored.result.images else None
    return info if info is not None and info.width > 0 and info.height > 0 else None


def _own(boxes: tuple[Box, ...], info: ImageInfo) -> list[Box]:
    return [b for b in boxes if b.image_id == info.id]


def _labels(kept: list[tuple[StoredResult, ImageInfo]], options: ExportOptions) -> dict[str, int]:
    """Label -> category id (from 1): the schema's labels in order, then others the boxes hold, alphabetically."""
    seen = {b.label or DEFAULT_LABEL for s, info in kept for b in _own(final_boxes(s), info)}
    extra = sorted(seen - set(options.labels))
    return {name: i for i, name in enumerate((*options.labels, *extra), start=1)}


def coco(results: list[StoredResult], options: ExportOptions | None = None) -> dict[str, Any]:
    """A COCO detection document: one image per readable item, a category per label (stable ids, see module)."""
    options = options or ExportOptions()
    kept = [(s, info) for s in results if (info := _image(s)) is not None]
    root = options.image_root or common_root(s for s, _ in kept)
    category = _labels(kept, options)
    images, annotations = [], []
    for s, info in kept:
        images.append(
            {"id": s.item_id, "file_name": relative(s.path, root), "width": info.width, "height": info.height}
        )
        for b in _own(final_boxes(s), info):
            x0, y0, x1, y1 = b.pixels
            ann = {
                "id": len(annotations) + 1,
                "image_id": s.item_id,
                "category_id": category[b.label or DEFAULT_LABEL],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],  # the box as a polygon (pycocotools' masks)
                "iscrowd": 0,
            }
            if b.confidence is not None:
                ann["score"] = b.confidence
            annotations.append(ann)
    return {
        "info": {
            "description": "Loupe export (pixels of the upright image: EXIF orientation applied)",
            "image_root": root.as_posix(),  # file_name is relative to this folder
        },
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


def image_url(path: str, root: Path, prefix: str) -> str:
    """What Label Studio loads the image from: PREFIX + the path relative to ROOT, URL-quoted."""
    return prefix + quote(relative(path, root), safe="/")


def labelstudio(results: list[StoredResult], options: ExportOptions | None = None) -> list[dict[str, Any]]:
    """Label Studio tasks: the model's boxes as predictions, a person's accepted or edited boxes as annotations."""
    options = options or ExportOptions()
    kept = [(s, info) for s in results if (info := _image(s)) is not None]
    root = options.image_root or common_root(s for s, _ in kept)
    tasks = []
    for s, info in kept:
        task: dict[str, Any] = {
            "id": s.item_id,
            "data": {
                "image": image_url(s.path, root, options.image_url_prefix),
                "loupe_path": s.path,
                "loupe_result": s.id,
                "loupe_status": s.result.status.value,
            },
            "predictions": [
                {
                    "model_version": s.result.model,
                    "score": s.result.min_confidence,
                    "result": _regions(_own(model_boxes(s), info), info),
                }
            ],
        }
        if s.review is not None and s.review.decision != "reject":
            task["annotations"] = [{"result": _regions(_own(final_boxes(s), info), info)}]
            task["data"]["loupe_review"] = {"decision": s.review.decision, "who": s.review.who, "at": s.review.at}
        tasks.append(task)
    return tasks


def labelstudio_config(results: list[StoredResult], options: ExportOptions | None = None) -> str:
    """The labelling config (XML) the tasks import into: the image and a rectangle label per category."""
    options = options or ExportOptions()
    kept = [(s, info) for s in results if (info := _image(s)) is not None]
    names = list(_labels(kept, options)) or [DEFAULT_LABEL]  # Label Studio wants at least one
    labels = "".join(f"    <Label value={quoteattr(name)}/>\n" for name in names)
    return (
        "<View>\n"
        '  <Image name="image" value="$image"/>\n'
        '  <RectangleLabels name="label" toName="image">\n'
        f"{labels}"
        "  </RectangleLabels>\n"
        "</View>\n"
    )


def config_path(out: Path) -> Path:
    """Where the labelling config goes beside a Label Studio export: `tasks.json` -> `tasks.config.xml`."""
    return out.with_name(f"{out.stem}.config.xml")


def write_coco(results: list[StoredResult], out: Path, options: ExportOptions | None = None) -> int:
    """COCO JSON file; returns the number of images."""
    doc = coco(results, options)
    with atomic_open(out, encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
    return len(doc["images"])


def write_labelstudio(results: list[StoredResult], out: Path, options: ExportOptions | None = None) -> int:
    """Label Studio import JSON file and its labelling config beside it (`config_path`); returns the task count."""
    tasks = labelstudio(results, options)
    with atomic_open(config_path(out), encoding="utf-8") as f:
        f.write(labelstudio_config(results, options))
    with atomic_open(out, encoding="utf-8") as f:
        json.dump(tasks, f, ensure_ascii=False, indent=1)
    return len(tasks)
