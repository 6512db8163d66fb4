"""Downscale an image to what the model needs, and say what was done."""

from __future__ import annotations

from PIL import Image

DETAIL_MAX_SIDE = {"low": 512, "high": 1536}
# Image tokens a backend may spend per image. llama.cpp's idefics3 (SmolVLM) preprocessing otherwise
# upscales every image to 2048 px: 13-17 tiles of 64 tokens, ~26 s of encoding at 256M dims on 2 cores.
# 128 gives the overview + one tile (~3.7 s). None: the model's own default.
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
