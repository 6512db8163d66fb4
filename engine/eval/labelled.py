"""Labelled sets: Loupe's own export (images/ + labels.jsonl + tasks.json), a JSONL of {image, data}, COCO boxes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loupe.core.errors import InputError
from loupe.core.tasks import Task
from loupe.store.records import task_from_dict

DEFAULT_BOX_LIST = "objects"


class LabelledSetError(InputError):
    """A labelled set that cannot be read; the message names the file (and line) and what is wrong."""


@dataclass(frozen=True)
class LabelledItem:
    """One labelled image: its file and the data that is right for it."""

    image: Path
    data: Any
    task: str | None = None  # the task it was labelled under (Loupe's export says so)


@dataclass(frozen=True)
class LabelledSet:
    """The images with their right answers, where they came from, and the tasks recorded with them (if any)."""

    source: str
    kind: str
    items: tuple[LabelledItem, ...]
    tasks: tuple[Task, ...] = ()


def _image(root: Path, name: Any, where: str) -> Path:
    if not isinstance(name, str) or not name:
        raise LabelledSetError(f"{where}: `image` must be a file name")
    path = (root / name).resolve()
    if not path.is_file():
        raise LabelledSetError(f"{where}: image not found: {path}")
    return path


def _jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelledSetError(f"{path}: cannot read ({exc})") from None
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise LabelledSetError(f"{where}: not JSON ({exc})") from None
        if not isinstance(row, dict) or "image" not in row or "data" not in row:
            raise LabelledSetError(f"{where}: each line is an object with `image` and `data`")
        rows.append((where, row))
    return rows


def load_jsonl(path: Path) -> LabelledSet:
    """A JSONL file of `{"image": "relative/or/absolute.jpg", "data": {...}}` lines."""
    items = tuple(
        LabelledItem(_image(path.parent, row["image"], where), row["data"], row.get("task"))
        for where, row in _jsonl(path)
    )
    return LabelledSet(str(path), "jsonl", items)


def load_export(folder: Path) -> LabelledSet:
    """The folder `loupe export --labelled --out DIR` wrote."""
    rows = _jsonl(folder / "labels.jsonl")
    tasks: tuple[Task, ...] = ()
    tasks_file = folder / "tasks.json"
    if tasks_file.is_file():
        try:
            raw = json.loads(tasks_file.read_text(encoding="utf-8"))
            tasks = tuple(task_from_dict(t) for t in raw.values())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LabelledSetError(f"{tasks_file}: not a Loupe tasks file ({exc})") from None
    items = tuple(
        LabelledItem(_image(folder, row["image"], where), row["data"], row.get("task")) for where, row in rows
    )
    return LabelledSet(str(folder), "loupe", items, tasks)


def coco_data(doc: dict[str, Any], list_key: str = DEFAULT_BOX_LIST) -> dict[Any, dict[str, Any]]:
    """Per COCO image id, Loupe data `{list_key: [{"label", "box_2d"}]}` with boxes as [ymin, xmin, ymax, xmax]
    normalized to 0–1000 (COCO boxes are pixel [x, y, width, height])."""
    names = {c["id"]: c["name"] for c in doc.get("categories", [])}
    sizes = {im["id"]: (im["width"], im["height"]) for im in doc["images"]}
    out: dict[Any, dict[str, Any]] = {im_id: {list_key: []} for im_id in sizes}
    for ann in doc.get("annotations", []):
        w, h = sizes[ann["image_id"]]
        x, y, bw, bh = ann["bbox"]
        box = [round(1000 * y / h), round(1000 * x / w), round(1000 * (y + bh) / h), round(1000 * (x + bw) / w)]
        out[ann["image_id"]][list_key].append({"label": names.get(ann.get("category_id"), "object"), "box_2d": box})
    return out


def load_coco(path: Path, list_key: str = DEFAULT_BOX_LIST) -> LabelledSet:
    """A COCO detection file; images are found relative to the file (`file_name`)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        data = coco_data(doc, list_key)
        items = tuple(
            LabelledItem(_image(path.parent, im["file_name"], f"{path}: image {im['id']}"), data[im["id"]])
            for im in doc["images"]
        )
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LabelledSetError(f"{path}: cannot read ({exc})") from None
    except (KeyError, TypeError, ZeroDivisionError) as exc:
        raise LabelledSetError(
            f"{path}: not a COCO detection file (images need id, file_name, width, height; "
            f"annotations image_id and bbox): {exc!r}"
        ) from None
    return LabelledSet(str(path), "coco", items)


def _is_coco(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as f:
            head = f.read(4096)
    except OSError:
        return False
    return '"images"' in head or '"annotations"' in head or '"categories"' in head


LOADERS: dict[str, Callable[[Path, str], LabelledSet]] = {
    "loupe": lambda p, key: load_export(p),
    "jsonl": lambda p, key: load_jsonl(p),
    "coco": load_coco,
}


def guess_kind(path: Path) -> str:
    """loupe (a folder with labels.jsonl), jsonl, or coco (a .json with images/annotations)."""
    if path.is_dir():
        if (path / "labels.jsonl").is_file():
            return "loupe"
        raise LabelledSetError(f"{path}: a labelled-set folder holds labels.jsonl (from `loupe export --labelled`)")
    if path.suffix.lower() == ".jsonl":
        return "jsonl"
    if path.suffix.lower() == ".json" and _is_coco(path):
        return "coco"
    if not path.exists():
        raise LabelledSetError(f"{path}: no such file or folder")
    raise LabelledSetError(f"{path}: give a labelled-set folder, a .jsonl of {{image, data}} or a COCO .json")


def load_labelled(path: str | Path, *, kind: str | None = None, list_key: str = DEFAULT_BOX_LIST) -> LabelledSet:
    """Read a labelled set of any known kind; an empty one is refused."""
    p = Path(path).expanduser()
    kind = kind or guess_kind(p)
    if kind not in LOADERS:
        raise LabelledSetError(f"unknown labelled-set kind {kind!r} (known: {', '.join(LOADERS)})")
    labelled = LOADERS[kind](p, list_key)
    if not labelled.items:
        raise LabelledSetError(f"{p}: the labelled set is empty")
    return labelled


def box_list_key(schema: Any) -> str:
    """The task's top-level array of objects with `box_2d` (where COCO boxes go), else `objects`."""
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    for key, sub in props.items():
        items = sub.get("items") if isinstance(sub, dict) else None
        if isinstance(items, dict) and "box_2d" in (items.get("properties") or {}):
            return str(key)
    return DEFAULT_BOX_LIST
