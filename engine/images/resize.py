"""Downscale an image to what the model needs, and say what was done."""

from __future__ import annotations

from PIL import Image

DETAIL_MAX_SIDE = {"low": 512, "high": 1536}


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
