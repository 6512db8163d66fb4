"""What an export states besides the results: the label list (stable category ids), the image root, the URL prefix."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loupe.core.images.boxes import BOX_KEY, LABEL_KEYS
from loupe.store.records import StoredResult
from loupe.store.sqlite import Store

LOCAL_FILES = "/data/local-files/?d="  # Label Studio's local-files storage, relative to LOCAL_FILES_DOCUMENT_ROOT


@dataclass(frozen=True)
class ExportOptions:
    """`labels`: category names in a stable order (the schemas' label enums); `image_root`: the folder file names are
    relative to (None: the images' common parent); `image_url_prefix`: what Label Studio's image URLs start with."""

    labels: tuple[str, ...] = ()
    image_root: Path | None = None
    image_url_prefix: str = LOCAL_FILES


def _enum(schema: Any) -> Iterator[str]:
    """The string values a label property allows: `enum`, `const`, or alternatives of those."""
    if not isinstance(schema, dict):
        return
    for value in schema.get("enum", ()) if isinstance(schema.get("enum"), list) else ():
        if isinstance(value, str):
            yield value
    if isinstance(schema.get("const"), str):
        yield schema["const"]
    for key in ("anyOf", "oneOf"):
        for alternative in schema.get(key, ()) if isinstance(schema.get(key), list) else ():
            yield from _enum(alternative)


def _walk(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from _walk(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _walk(value)


def schema_labels(schema: Any) -> tuple[str, ...]:
    """The labels a task's boxes may carry, in schema order: the enum of the label key beside each `box_2d`."""
    labels: dict[str, None] = {}
    for node in _walk(schema):
        props = node.get("properties")
        if not isinstance(props, dict) or BOX_KEY not in props:
            continue
        key = next((k for k in LABEL_KEYS if k in props), None)
        if key is not None:
            labels.update(dict.fromkeys(_enum(props[key])))
    return tuple(labels)


def common_root(results: Iterable[StoredResult]) -> Path:
    """The deepest folder holding every result's image (the current folder when there are none)."""
    parents = [str(Path(s.path).resolve().parent) for s in results]
    return Path(os.path.commonpath(parents)) if parents else Path.cwd()


def options_for(
    store: Store,
    job_ids: Sequence[int],
    results: Sequence[StoredResult],
    *,
    image_root: str | Path | None = None,
    prefix: str | None = None,
) -> ExportOptions:
    """The options an export of these jobs states: their tasks' labels, the image root (given or common), the prefix."""
    labels: dict[str, None] = {}
    for job_id in job_ids:
        labels.update(dict.fromkeys(schema_labels(store.job(job_id).task.schema)))
    root = Path(image_root).resolve() if image_root else common_root(results)
    return ExportOptions(tuple(labels), root, LOCAL_FILES if prefix is None else prefix)


def relative(path: str, root: Path) -> str:
    """PATH relative to ROOT with forward slashes (`../` where it lies outside; absolute on another drive)."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), root)).as_posix()
    except ValueError:  # Windows: another drive has no relative path
        return Path(path).resolve().as_posix()
