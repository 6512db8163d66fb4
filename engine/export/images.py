"""Image exports: overlays (boxes drawn with label and confidence) and the labelled set (images + JSONL)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from loupe.core.errors import LoupeError
from loupe.core.images.load import load_image
from loupe.core.types import Box
from loupe.export.rows import atomic_open, final_boxes
from loupe.store.records import StoredResult, task_to_dict
from loupe.store.sqlite import Store
from PIL import Image, ImageDraw, ImageFont

COLORS = ((255, 64, 64), (64, 160, 255), (255, 200, 0), (80, 220, 120), (220, 80, 255), (255, 140, 40))


@dataclass(frozen=True)
class Written:
    """How many files an image export wrote, and which sources it could not read (path: reason)."""

    written: int
    skipped: tuple[str, ...] = ()


def draw_boxes(image: Image.Image, boxes: tuple[Box, ...]) -> Image.Image:
    """A copy of the upright image with each box outlined and tagged `label 0.87`."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    line = max(2, round(max(out.size) / 300))
    font = ImageFont.load_default(size=max(12, round(max(out.size) / 40)))
    colors: dict[str, tuple[int, int, int]] = {}
    for b in boxes:
        label = b.label or "object"
        color = colors.setdefault(label, COLORS[len(colors) % len(COLORS)])
        draw.rectangle(b.pixels, outline=color, width=line)
        text = label if b.confidence is None else f"{label} {b.confidence:.2f}"
        x0, y0 = b.pixels[0], b.pixels[1]
        left, top, right, bottom = draw.textbbox((x0, y0), text, font=font)
        lift = min(bottom - top + 2, y0)  # above the box when there is room, else inside it
        draw.rectangle((left, top - lift, right + 4, bottom - lift), fill=color)
        draw.text((x0 + 2, y0 - lift), text, fill=(0, 0, 0), font=font)
    return out


def write_overlays(results: list[StoredResult], out_dir: Path) -> Written:
    """One PNG per result with boxes, named ITEM-STEM.png; results without boxes are left out."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = 0, []
    for s in results:
        boxes = final_boxes(s)
        if not boxes:
            continue
        try:
            image = load_image(s.path).image
        except LoupeError as exc:
            skipped.append(str(exc))
            continue
        target = out_dir / f"{s.item_id:05d}-{Path(s.path).stem}.png"
        with atomic_open(target, "wb") as f:
            draw_boxes(image, boxes).save(f, format="PNG")
        written += 1
    return Written(written, tuple(skipped))


def write_labelled(store: Store, results: list[StoredResult], out_dir: Path) -> Written:
    """The labelled set: images/ (named by content hash), labels.jsonl (final data per image) and tasks.json."""
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    tasks: dict[str, dict[str, object]] = {}
    lines, skipped = [], []
    for s in results:
        assert s.review is not None, "the labelled set holds reviewed results only"
        job = store.job(s.job_id)
        tasks.setdefault(job.task_key, task_to_dict(job.task))
        name = f"{(s.sha256 or f'item{s.item_id}')[:16]}{Path(s.path).suffix.lower()}"
        try:
            if not (images / name).exists():
                shutil.copyfile(s.path, images / name)
        except OSError as exc:
            skipped.append(f"{s.path}: {exc.strerror or exc}")
            continue
        lines.append(
            {
                "image": f"images/{name}",
                "source": s.path,
                "sha256": s.sha256,
                "task": job.task.name,
                "task_key": job.task_key,
                "data": s.final_data,
                "decision": s.review.decision,
                "who": s.review.who,
                "at": s.review.at,
                "note": s.review.note,
                "job": s.job_id,
                "result": s.id,
            }
        )
    with atomic_open(out_dir / "labels.jsonl", encoding="utf-8") as f:
        f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    with atomic_open(out_dir / "tasks.json", encoding="utf-8") as f:
        json.dump(tasks, f, ensure_ascii=False, indent=1)
    return Written(len(lines), tuple(skipped))
