"""What the llama.cpp backend needs to know about a GGUF file before llama.cpp opens it: is it one, and which projector.

The header is read by hand: the `gguf` package's reader costs ~0.2 s to import and parses every tensor, while
one string key near the front of the file is all we need at model load.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from engine.errors import ModelLoadError

GGUF_MAGIC = b"GGUF"
# GGUF value types -> fixed byte size (8 = string and 9 = array are read separately)
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_KEYS = 100_000  # a header claiming more is corrupt


def check_gguf(path: Path, what: str) -> None:
    """Refuse a missing, empty, truncated-header or non-GGUF file with a message naming the fix."""
    if not path.exists():
        raise ModelLoadError(f"{what} not found: {path} (check the path, or run `loupe models list`)")
    if not path.is_file():
        raise ModelLoadError(f"{what} is not a file: {path}")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head != GGUF_MAGIC:
        raise ModelLoadError(
            f"{what} is not a GGUF file (corrupt or wrong download): {path} "
            "(re-download it with `loupe models pull NAME`, or import the right file)"
        )


def string_value(path: Path, key: str) -> str | None:
    """The string value of metadata `key` in a GGUF file; None when absent or the header is unreadable."""
    try:
        with path.open("rb") as fh:
            if fh.read(4) != GGUF_MAGIC:
                return None
            _version, _n_tensors, n_kv = struct.unpack("<IQQ", _read(fh, 20))
            for _ in range(min(n_kv, _MAX_KEYS)):
                name = _string(fh)
                (vtype,) = struct.unpack("<I", _read(fh, 4))
                if vtype == _STRING:
                    value = _string(fh)
                    if name == key.encode():
                        return value.decode("utf-8", "replace")
                else:
                    _skip(fh, vtype)
    except (OSError, ValueError, struct.error):
        return None
    return None


def projector_type(path: Path) -> str:
    """The mmproj's `clip.projector_type` (e.g. "idefics3", "gemma3"); "" when unknown."""
    return string_value(path, "clip.projector_type") or ""


def _read(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise ValueError("truncated GGUF header")
    return data


def _string(fh: BinaryIO) -> bytes:
    (n,) = struct.unpack("<Q", _read(fh, 8))
    if n > 1 << 24:
        raise ValueError("implausible GGUF string length")
    return _read(fh, n)


def _skip(fh: BinaryIO, vtype: int) -> None:
    if vtype in _FIXED:
        fh.seek(_FIXED[vtype], 1)
    elif vtype == _ARRAY:
        etype, count = struct.unpack("<IQ", _read(fh, 12))
        if etype in _FIXED:
            fh.seek(_FIXED[etype] * count, 1)
        else:
            for _ in range(count):
                if etype == _STRING:
                    _string(fh)
                else:
                    _skip(fh, etype)
    else:
        raise ValueError(f"unknown GGUF value type {vtype}")
