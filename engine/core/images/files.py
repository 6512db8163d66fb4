"""Which files are images: folders walked for image extensions, hidden entries skipped (CLI, batch, desktop)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

# the names of the formats loupe.core.images.load decodes (FORMATS); a folder's other files are not picked up
IMAGE_EXTENSIONS = {
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".png",
    ".webp",
    ".bmp",
    ".dib",
    ".gif",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".avif",
}


def expand(inputs: Sequence[str]) -> Iterator[str]:
    """Files as given; folders walked recursively for image files, skipping hidden entries."""
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                        yield str(Path(root) / name)
        else:
            yield raw  # missing or odd files are reported by the engine, per image
