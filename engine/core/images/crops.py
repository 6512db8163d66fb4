"""Region crops for a second, closer look: a margin around a box, and the map from crop coordinates back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

MARGIN = 0.25  # of the box's width/height, added on each side
MIN_SIDE = 32  # pixels: tiny boxes still get some context


@dataclass(frozen=True)
class CropWindow:
    """Where a crop lies in its upright image, in pixels: `(x0, y0)` is its top-left corner."""

    image_id: str
    source: str  # JSON Pointer of the box it was cut around
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the crop."""
        return self.x1 - self.x0, self.y1 - self.y0

    def box_to_image(self, box_2d: Sequence[float], image_size: tuple[int, int]) -> list[int]:
        """A `[ymin, xmin, ymax, xmax]` 0–1000 box in crop coordinates -> the same box in the whole image's 0–1000."""
        w, h = self.size
        iw, ih = image_size
        y0, x0, y1, x1 = (min(1000.0, max(0.0, float(v))) for v in box_2d)
        return [
            round((self.y0 + y0 / 1000 * h) / ih * 1000),
            round((self.x0 + x0 / 1000 * w) / iw * 1000),
            round((self.y0 + y1 / 1000 * h) / ih * 1000),
            round((self.x0 + x1 / 1000 * w) / iw * 1000),
        ]

    def to_dict(self) -> dict[str, Any]:
        """The transform as recorded in a step: x_image = x0 + x_crop/1000 * width (likewise y)."""
        return {
            "image_id": self.image_id,
            "box": self.source,
            "window_px": [self.x0, self.y0, self.x1, self.y1],
            "offset_px": [self.x0, self.y0],
            "size_px": list(self.size),
        }


def _span(lo: int, hi: int, limit: int, margin: float, min_side: int) -> tuple[int, int]:
    """Grow [lo, hi) by `margin` each side (at least to `min_side`), shifted and clipped to [0, limit)."""
    lo, hi = sorted((max(0, min(limit, lo)), max(0, min(limit, hi))))
    want = min(limit, max(round((hi - lo) * (1 + 2 * margin)), min_side, 1))
    start = round((lo + hi) / 2 - want / 2)
    start = max(0, min(start, limit - want))
    return start, start + want


def window(
    pixels: Sequence[int],
    image_size: tuple[int, int],
    *,
    image_id: str = "img_01",
    source: str = "",
    margin: float = MARGIN,
    min_side: int = MIN_SIDE,
) -> CropWindow:
    """The crop around `(x0, y0, x1, y1)` pixels with `margin` of context, kept inside the image."""
    if margin < 0 or min_side < 1:
        raise ValueError("margin must be >= 0 and min_side >= 1")
    w, h = image_size
    x0, x1 = _span(int(pixels[0]), int(pixels[2]), w, margin, min_side)
    y0, y1 = _span(int(pixels[1]), int(pixels[3]), h, margin, min_side)
    return CropWindow(image_id, source, x0, y0, x1, y1)


def cut(img: Image.Image, win: CropWindow) -> Image.Image:
    """The crop's pixels (a new image that carries none of the original's metadata)."""
    return img.crop((win.x0, win.y0, win.x1, win.y1))
