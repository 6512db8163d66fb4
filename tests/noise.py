"""Random-noise test images, made one way for every test folder: the same seed always gives the same pixels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def noise_image(size: tuple[int, int], rng: np.random.Generator | int = 0) -> Image.Image:
    """An RGB image of `size` (width, height) filled with noise from `rng` (a generator, or a seed for a new one)."""
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return Image.fromarray(gen.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def write_noise_pngs(
    folder: Path,
    n: int,
    *,
    seed: int = 0,
    size: tuple[int, int] | Callable[[int], tuple[int, int]] = (32, 24),
    name: str = "{i}.png",
    start: int = 0,
) -> list[Path]:
    """`n` distinct PNGs in `folder` (made if absent), numbered from `start`; `name` and `size` may depend on i."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(start, start + n):
        path = folder / name.format(i=i)
        noise_image(size(i) if callable(size) else size, rng).save(path)
        paths.append(path)
    return paths
