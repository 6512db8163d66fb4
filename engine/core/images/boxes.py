"""Boxes: find `box_2d` values in results and map 0–1000 `[ymin, xmin, ymax, xmax]` to pixels."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

from loupe.core.types import Box

BOX_KEY = "box_2d"
LABEL_KEYS = ("label", "name", "category")


def to_pixels(box_2d: list[float] | tuple[float, ...], width: int, height: int) -> tuple[int, int, int, int]:
    """`[ymin, xmin, ymax, xmax]` in 0–1000 -> `(x0, y0, x1, y1)` pixels, ordered and clamped."""
    y0, x0, y1, x1 = (min(1000.0, max(0.0, float(v))) for v in box_2d)
    y0, y1 = sorted((y0, y1))
    x0, x1 = sorted((x0, x1))
    return (
        round(x0 / 1000 * width),
        round(y0 / 1000 * height),
        round(x1 / 1000 * width),
        round(y1 / 1000 * height),
    )


def degenerate(pixels: tuple[int, int, int, int]) -> bool:
    """No area in pixels (zero or negative width or height once ordered): nothing a person or a tool could see."""
    x0, y0, x1, y1 = pixels
    return x1 <= x0 or y1 <= y0


def to_normalized(pixels: tuple[int, int, int, int], width: int, height: int) -> tuple[float, ...]:
    """`(x0, y0, x1, y1)` pixels -> `[ymin, xmin, ymax, xmax]` in 0–1000 (for crops and tests)."""
    x0, y0, x1, y1 = pixels
    return (y0 / height * 1000, x0 / width * 1000, y1 / height * 1000, x1 / width * 1000)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _walk(value: Any, pointer: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(value, Mapping):
        yield pointer, value
        for k, v in value.items():
            yield from _walk(v, f"{pointer}/{_escape(str(k))}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{pointer}/{i}")


def _is_box(v: Any) -> TypeGuard[list[float]]:
    return (
        isinstance(v, list) and len(v) == 4 and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
    )


def find_boxes(
    data: Any,
    sizes: Mapping[str, tuple[int, int]],
    confidence: Mapping[str, float] | None = None,
) -> tuple[Box, ...]:
    """Every object holding a 4-number `box_2d`, converted to pixels of its image; degenerate ones left out.

    `sizes` maps image id -> (width, height) of the upright image; an object may name its image
    with an `image_id` key, otherwise the first image is meant. A box with no area in pixels (see
    `degenerate`) is never a box: not drawn, not exported; `invalid_boxes` names them.
    """
    return tuple(b for b in all_boxes(data, sizes, confidence) if not degenerate(b.pixels))


def invalid_boxes(data: Any, sizes: Mapping[str, tuple[int, int]]) -> tuple[Box, ...]:
    """The `box_2d` values `find_boxes` leaves out: no area once converted to pixels."""
    return tuple(b for b in all_boxes(data, sizes) if degenerate(b.pixels))


def flag_invalid(confidence: Mapping[str, float], data: Any, sizes: Mapping[str, tuple[int, int]]) -> dict[str, float]:
    """`confidence` with every number of a degenerate `box_2d` at 0: the field reads as unsure and the result goes
    to review (its lowest confidence is 0), while `find_boxes` keeps the box itself out of every drawing and
    export."""
    out = dict(confidence)
    for box in invalid_boxes(data, sizes):
        for i in range(4):
            out[f"{box.pointer}/{i}"] = 0.0
    return out


def all_boxes(
    data: Any,
    sizes: Mapping[str, tuple[int, int]],
    confidence: Mapping[str, float] | None = None,
) -> tuple[Box, ...]:
    """Every object holding a 4-number `box_2d`, degenerate or not (see `find_boxes`)."""
    if not sizes:
        return ()
    first = next(iter(sizes))
    confidence = confidence or {}
    boxes = []
    for pointer, obj in _walk(data, ""):
        raw = obj.get(BOX_KEY)
        if not _is_box(raw):
            continue
        named = obj.get("image_id")
        image_id = named if isinstance(named, str) and named in sizes else first  # any JSON may stand there
        w, h = sizes[image_id]
        label = next((str(obj[k]) for k in LABEL_KEYS if isinstance(obj.get(k), str)), None)
        box_ptr = f"{pointer}/{BOX_KEY}"
        confs = [c for p, c in confidence.items() if p.startswith(box_ptr + "/")]
        ymin, xmin, ymax, xmax = (float(v) for v in raw)
        boxes.append(
            Box(
                pointer=box_ptr,
                label=label,
                box_2d=(ymin, xmin, ymax, xmax),
                pixels=to_pixels(raw, w, h),
                image_id=image_id,
                confidence=min(confs) if confs else None,
            )
        )
    return tuple(boxes)
