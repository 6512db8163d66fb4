"""What the llama.cpp backend needs to know about a GGUF file before llama.cpp opens it: is it one, and which projector.

The header is read by hand: the `gguf` package's reader costs ~0.2 s to import and parses every tensor, while
one string key near the front of the file is all we need at model load.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from loupe.core.errors import ModelLoadError

GGUF_MAGIC = b"GGUF"
# GGUF value types -> fixed byte size (8 = string and 9 = array are read separately)
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_KEYS = 100_000  # a header claiming more is corrupt
# ggml types llama.cpp's CPU backend repacks into its own buffers (ggml-cpu/repack.cpp, llama-cpp-python 0.3.36):
# Q2_K 10, Q4_0 2, Q4_K 12, Q5_K 13, Q6_K 14, Q8_0 8, IQ4_NL 20, MXFP4 39
REPACKED_TYPES = {
    "x86_64": frozenset({2, 10, 12, 20, 39}),  # AVX2 (Q2_K with AVX-512)
    "amd64": frozenset({2, 10, 12, 20, 39}),
    "aarch64": frozenset({2, 8, 10, 12, 13, 14, 20, 39}),  # NEON dotprod / i8mm
    "arm64": frozenset({2, 8, 10, 12, 13, 14, 20, 39}),
}


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
            _n_tensors, strings = _metadata(fh)
    except (OSError, ValueError, struct.error):
        return None
    value = strings.get(key.encode())
    return None if value is None else value.decode("utf-8", "replace")


def tensor_types(path: Path) -> set[int]:
    """The ggml type numbers of a GGUF file's tensors (read from the header); empty when unreadable."""
    return {ttype for ttype, _n_dims in tensor_kinds(path)}


def tensor_kinds(path: Path) -> list[tuple[int, int]]:
    """(ggml type number, number of dimensions) of each tensor, from the header; empty when unreadable."""
    try:
        with path.open("rb") as fh:
            n_tensors, _strings = _metadata(fh)
            kinds = []
            for _ in range(min(n_tensors, _MAX_KEYS)):
                _string(fh)
                (n_dims,) = struct.unpack("<I", _read(fh, 4))
                fh.seek(8 * n_dims, 1)
                (ttype,) = struct.unpack("<I", _read(fh, 4))
                fh.seek(8, 1)  # offset
                kinds.append((ttype, n_dims))
            return kinds
    except (OSError, ValueError, struct.error):
        return []


def _metadata(fh: BinaryIO) -> tuple[int, dict[bytes, bytes]]:
    """Read the header up to the tensor infos: the tensor count and every string-valued key (others skipped)."""
    if fh.read(4) != GGUF_MAGIC:
        raise ValueError("not a GGUF file")
    _version, n_tensors, n_kv = struct.unpack("<IQQ", _read(fh, 20))
    strings: dict[bytes, bytes] = {}
    for _ in range(min(n_kv, _MAX_KEYS)):
        name = _string(fh)
        (vtype,) = struct.unpack("<I", _read(fh, 4))
        if vtype == _STRING:
            strings[name] = _string(fh)
        else:
            _skip(fh, vtype)
    return n_tensors, strings


def repacked(path: Path, machine: str) -> bool:
    """Whether llama.cpp's CPU backend will copy some of this model's weights into repacked buffers on `machine`
    (platform.machine()). Memory-mapped, those weights then stay resident twice (llama.cpp issue #16761)."""
    return bool(tensor_types(path) & REPACKED_TYPES.get(machine.lower(), frozenset()))


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
