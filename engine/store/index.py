"""What the store keeps for search beside each result: a 64-bit perceptual hash per image, the text of its answer.

The pHash (imagehash's DCT hash) is computed at save time from the image file the result names, not from the
pipeline's decoded pixels: a Result carries no pixels, and holding every decoded image until its save would cost
memory a batch does not have. JPEGs are decoded at 1/8 scale (Pillow's draft mode; the hash looks at 32x32 grey
pixels), so hashing costs a few milliseconds, paid once; an image whose bytes are already hashed in the store is not
decoded again. Callers that still hold the decoded image (`loupe serve`) pass its hash instead (`phash_image`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

HASH_SIZE = 8  # 8x8 DCT coefficients: 64 bits, one SQLite INTEGER


def to_signed(value: int) -> int:
    """An unsigned 64-bit hash as SQLite's signed INTEGER."""
    return value - (1 << 64) if value >= 1 << 63 else value


def to_unsigned(value: int) -> int:
    """A stored (signed) hash back to its 64 unsigned bits."""
    return value + (1 << 64) if value < 0 else value


def phash_image(image: Image.Image) -> int:
    """The 64-bit pHash of an (upright) image, as an unsigned int."""
    import imagehash

    bits = imagehash.phash(image, hash_size=HASH_SIZE).hash.flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def phash_file(path: str | Path) -> int | None:
    """The pHash of an image file (upright per its EXIF orientation), or None when it cannot be read as an image."""
    try:
        with Image.open(path) as img:
            img.draft("L", (64, 64))  # JPEG: decode at a fraction of the size; other formats ignore it
            upright = ImageOps.exif_transpose(img)
            return phash_image(upright.convert("L"))
    except Exception:  # Pillow raises many kinds on hostile files (NotImplementedError for odd DDS...): no hash
        return None


def text_leaves(data: Any) -> Iterator[str]:
    """Every string value in a result's data, depth first (keys are not included)."""
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from text_leaves(value)
    elif isinstance(data, list):
        for value in data:
            yield from text_leaves(value)


def text_of(data: Any) -> str:
    """The text a result is found by in full-text search: its string leaves, one per line."""
    return "\n".join(text_leaves(data))
