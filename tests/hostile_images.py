"""A hostile image corpus, made by code: malformed headers and truncations of every allowed format, formats Loupe
does not decode (DDS, EPS and PDF, some disguised as PNG), decompression bombs, and a few good pictures between them.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

from tests.noise import noise_image

ALLOWED = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")  # the allowed formats Pillow writes without extras
EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tif", "BMP": "bmp", "GIF": "gif"}


def _encoded(fmt: str, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    noise_image((64, 48), seed).save(buf, format=fmt)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG that declares width x height pixels (its IDAT holds one row)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )


def tiff_without_dimensions() -> bytes:
    """A little-endian TIFF whose only IFD has no ImageWidth/ImageLength (Pillow raised TypeError on it)."""
    entries = [(259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 26)]  # compression, photometric, strip offsets
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0" * 16


def dds(fourcc: bytes = b"ZZZZ") -> bytes:
    """A DDS header with an unknown compressed pixel format (Pillow raised NotImplementedError on such files)."""
    header = bytearray(124)
    struct.pack_into("<IIII", header, 0, 124, 0x1007, 16, 16)  # size, flags, height, width
    struct.pack_into("<II4s", header, 72, 32, 0x4, fourcc)  # pixel format: size, DDPF_FOURCC, fourcc
    return b"DDS " + bytes(header) + b"\0" * 256


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke showpage\n%%EOF\n"
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def corpus(folder: Path, *, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Write the corpus into `folder`: (good pictures, hostile files), sorted so that they interleave."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    hostile: dict[str, bytes] = {
        "tiff-no-dimensions.tif": tiff_without_dimensions(),
        "dds-unknown-fourcc.dds": dds(),
        "dds-as-png.png": dds(b"DX10"),
        "eps-as-png.png": EPS,
        "pdf-as-png.png": PDF,
        "eps.eps": EPS,
        "png-bomb.png": png_bomb(),
        "png-wide-bomb.png": png_bomb(200_000, 1),
        "empty.jpg": b"",
        "text.jpg": b"this is not a picture\n" * 10,
    }
    for fmt in ALLOWED:
        data = _encoded(fmt, seed)
        ext = EXT[fmt]
        hostile[f"truncated-half.{ext}"] = data[: len(data) // 2]
        hostile[f"truncated-header.{ext}"] = data[: min(len(data) - 1, 12)]
        for k in range(3):
            flipped = bytearray(data)
            for _ in range(4):
                at = rng.randrange(min(len(flipped), 96))
                flipped[at] ^= 1 << rng.randrange(8)
            hostile[f"bad-header-{k}.{ext}"] = bytes(flipped)
    good = []
    for i, fmt in enumerate(("PNG", "JPEG", "WEBP")):
        path = folder / f"{i:02d}-good.{EXT[fmt]}"
        path.write_bytes(_encoded(fmt, seed + 10 + i))
        good.append(path)
    bad = []
    for name, data in sorted(hostile.items()):
        path = folder / f"{len(bad) % 3:02d}-{name}"
        path.write_bytes(data)
        bad.append(path)
    return good, bad
