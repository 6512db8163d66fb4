"""Read an image file safely: size limits, EXIF orientation first, then plain 8-bit RGB."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from loupe.core.errors import ImageError
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold (~89.5 Mpx)
MAX_SIDE = 40_000
# the decoders Loupe lets Pillow use, chosen by the bytes, never by the name or a MIME type: the formats cameras,
# phones and scanners write. Never EPS/PS/PDF (Ghostscript runs on them), nor Pillow's long tail of rarely used,
# little-fuzzed plugins (DDS, FITS, PSD, ...).
FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "HEIF", "AVIF")

_heif_registered = False


@dataclass(frozen=True)
class LoadedImage:
    """An upright RGB image with where it came from and what was done to it."""

    path: str
    image: Image.Image
    sha256: str
    format: str
    transforms: tuple[str, ...]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the upright image."""
        return self.image.size


def _register_heif() -> None:
    """Let Pillow read HEIC/HEIF when the optional pillow-heif is installed."""
    global _heif_registered
    if _heif_registered or importlib.util.find_spec("pillow_heif") is None:
        return
    import pillow_heif

    pillow_heif.register_heif_opener()
    _heif_registered = True


def load_image(path: str | Path) -> LoadedImage:
    """Read `path` into an upright RGB image, or raise ImageError saying exactly what is wrong."""
    p = Path(path)
    name = str(path)
    if not p.exists():
        raise ImageError(name, "no such file")
    if not p.is_file():
        raise ImageError(name, "not a file")
    size = p.stat().st_size
    if size == 0:
        raise ImageError(name, "empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageError(name, f"file is {size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit")
    data = p.read_bytes()
    return decode_image(data, name)


def decode_image(data: bytes, name: str = "<bytes>") -> LoadedImage:
    """Decode image bytes (see `load_image`); `name` is used in error messages."""
    if not data:
        raise ImageError(name, "empty file (0 bytes)")
    _register_heif()
    sha = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Pillow skips a format it lacks (HEIF, AVIF)
            img: Image.Image = Image.open(io.BytesIO(data), formats=FORMATS)
            fmt = img.format or "unknown"
            w, h = img.size
            _check_dimensions(name, w, h)
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            name, f"not an image Loupe reads (unknown, corrupt, or not one of {', '.join(FORMATS)})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(name, f"refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(name, f"corrupt or truncated image data ({_one_line(exc)})") from None
    except Exception as exc:  # a decoder's own bug on hostile bytes (TypeError, NotImplementedError, ...)
        raise ImageError(name, f"corrupt image data ({type(exc).__name__}: {_one_line(exc)})") from None
    transforms: list[str] = []
    if getattr(img, "n_frames", 1) > 1:
        transforms.append("first frame of an animation")
    try:
        img, oriented = _upright(img, name)
        img, converted = to_rgb(img)
    except ImageError:
        raise
    except Exception as exc:  # an image that decoded but cannot be converted (odd modes, broken palettes)
        raise ImageError(name, f"cannot convert to RGB ({type(exc).__name__}: {_one_line(exc)})") from None
    transforms += [t for t in (oriented, converted) if t]
    return LoadedImage(path=name, image=img, sha256=sha, format=fmt, transforms=tuple(transforms))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def declared_pixels(data: bytes) -> int:
    """Width x height as the image's header declares them (nothing decoded); 0 when it cannot be read (the decode
    will say why)."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            w, h = img.size
            return max(0, w) * max(0, h)
    except Exception:
        return 0


def _check_dimensions(name: str, w: int, h: int) -> None:
    if w <= 0 or h <= 0:
        raise ImageError(name, f"image has no pixels ({w}x{h})")
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise ImageError(
            name,
            f"refused as a decompression bomb: {w}x{h} = {w * h / 1e6:.0f} Mpx "
            f"(limit {MAX_PIXELS / 1e6:.0f} Mpx, {MAX_SIDE} px a side)",
        )


def _upright(img: Image.Image, name: str) -> tuple[Image.Image, str]:
    """Apply EXIF orientation before anything else (llama.cpp's loader ignores it)."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not lose the image
        return img, "EXIF unreadable, orientation ignored"
    if orientation in (None, 1):
        return img, ""
    try:
        out = ImageOps.exif_transpose(img)
    except Exception as exc:
        raise ImageError(name, f"cannot apply EXIF orientation {orientation} ({exc})") from None
    return (out if out is not None else img), f"EXIF orientation {orientation} applied"


def to_rgb(img: Image.Image) -> tuple[Image.Image, str]:
    """Convert any Pillow mode to 8-bit RGB: alpha flattened on white, 16-bit and float scaled."""
    mode = img.mode
    if mode == "RGB":
        return img, ""
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = (0.0, 65535.0) if mode.startswith("I;16") else (float(arr.min()), float(arr.max()))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        grey = np.clip((arr - lo) * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB"), f"{mode} scaled to 8-bit RGB"
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        if img.mode == "RGB":
            return img, "palette converted to RGB"
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), f"{mode} alpha flattened on white"
    return img.convert("RGB"), f"{mode} converted to RGB"
