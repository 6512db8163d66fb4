"""Downscale or crop an image to what the model needs, and say what was done (so boxes map back)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

DETAIL_MAX_SIDE = {"low": 512, "high": 1536}
# Image tokens a backend may spend per image. llama.cpp's idefics3 (SmolVLM) preprocessing otherwise
# upscales every image to 2048 px: 13-17 tiles of 64 tokens, ~26 s of encoding at 256M dims on 2 cores.
# 128 gives a 1x1 grid: mtmd adds the overview to the one 512 px tile, the same picture twice, so the backend keeps
# only the overview (loupe.backends.reuse.drop_duplicate_view): one 64-token view (~1.7 s). Gemma 3 is always
# one 896 px tile (256 tokens). None: the model's own default.
DETAIL_IMAGE_TOKENS: dict[str, int | None] = {"low": 128, "high": None}


def max_side_for(detail: str | int) -> int:
    """Longest edge in pixels for an image detail setting ("low", "high" or a number of pixels)."""
    if isinstance(detail, int):
        return detail
    try:
        return DETAIL_MAX_SIDE[detail]
    except KeyError:
        raise ValueError(f"unknown image detail {detail!r}; use one of {sorted(DETAIL_MAX_SIDE)} or pixels") from None


def fit(img: Image.Image, max_side: int) -> tuple[Image.Image, str]:
    """Shrink `img` so its longest edge is at most `max_side` (never enlarges)."""
    w, h = img.size
    longest = max(w, h)
    if longest <= max_side:
        return img, ""
    scale = max_side / longest
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return out, f"downscaled {w}x{h} -> {size[0]}x{size[1]}"


def image_tokens_for(detail: str | int) -> int | None:
    """Cap on image tokens for a detail setting (None: the model decides; pixel details don't cap)."""
    return DETAIL_IMAGE_TOKENS.get(detail) if isinstance(detail, str) else None


@dataclass(frozen=True)
class Crop:
    """A region cut from an upright image (pixels, end-exclusive) for a `crop` detail pass; maps boxes back."""

    x0: int
    y0: int
    x1: int
    y1: int
    width: int  # the image it was cut from
    height: int

    def note(self) -> str:
        """The transform, as recorded in ImageInfo.transforms."""
        return f"cropped ({self.x0},{self.y0})-({self.x1},{self.y1}) of {self.width}x{self.height}"

    def to_original(self, box_2d: Sequence[float]) -> tuple[float, float, float, float]:
        """`[ymin, xmin, ymax, xmax]` 0-1000 relative to the crop -> 0-1000 relative to the whole image."""
        ymin, xmin, ymax, xmax = (float(v) for v in box_2d)
        cw, ch = self.x1 - self.x0, self.y1 - self.y0

        def x(v: float) -> float:
            return (self.x0 + v / 1000 * cw) / self.width * 1000

        def y(v: float) -> float:
            return (self.y0 + v / 1000 * ch) / self.height * 1000

        return (y(ymin), x(xmin), y(ymax), x(xmax))


def crop(img: Image.Image, box_2d: Sequence[float], *, margin: float = 0.1) -> tuple[Image.Image, Crop]:
    """Cut the region of a 0-1000 `box_2d` (e.g. found by a low-detail pass), widened by `margin` of its size."""
    w, h = img.size
    ymin, xmin, ymax, xmax = (min(1000.0, max(0.0, float(v))) for v in box_2d)
    ymin, ymax = sorted((ymin, ymax))
    xmin, xmax = sorted((xmin, xmax))
    dx, dy = (xmax - xmin) * margin, (ymax - ymin) * margin
    x0, x1 = int(max(0.0, xmin - dx) / 1000 * w), math.ceil(min(1000.0, xmax + dx) / 1000 * w)
    y0, y1 = int(max(0.0, ymin - dy) / 1000 * h), math.ceil(min(1000.0, ymax + dy) / 1000 * h)
    region = Crop(x0, y0, max(x1, x0 + 1), max(y1, y0 + 1), w, h)
    return img.crop((region.x0, region.y0, region.x1, region.y1)), region
