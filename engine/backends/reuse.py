"""Work a local backend need not repeat: the KV cache's shared prompt prefix, and image embeddings by content."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# 64 MB of embeddings: ~33 SmolVLM-256M images at full tiling (832 tokens x 576 floats), ~220 at detail low,
# ~25 Gemma-3-4B images (256 x 2560). Retries and second passes come soon after the first; a long batch of
# distinct images should not grow the process by more than this.
DEFAULT_EMBED_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ImageUnit:
    """An image chunk of a prompt: which picture (content hash + image-token cap), which slice, how many positions."""

    key: str
    slice: int
    n_pos: int


Unit = int | ImageUnit  # a text token, or one image chunk


def unit_len(unit: Unit) -> int:
    """KV positions a unit occupies."""
    return unit.n_pos if isinstance(unit, ImageUnit) else 1


def reusable_prefix(cached: Sequence[Unit], wanted: Sequence[Unit]) -> int:
    """How many leading units of `wanted` the KV cache already holds (always leaves the last one to evaluate).

    The last unit is evaluated again even when everything matches, since its logits start the decode.
    """
    n = 0
    for a, b in zip(cached, wanted, strict=False):
        if a != b:
            break
        n += 1
    return min(n, max(0, len(wanted) - 1))


# idefics3 (SmolVLM) as llama.cpp's mtmd lays out a 1x1 grid: the one tile, then the overview of the same picture
_TILE_OPEN = b"<fake_token_around_image><row_1_col_1>"
_GRID_END = b"\n\n"
_OVERVIEW_OPEN = b"<fake_token_around_image><global-img>"


def _split_bytes(tokens: list[Unit], piece: Callable[[int], bytes], want: bytes, *, tail: bool) -> int | None:
    """How many tokens at the tail (or head) of `tokens` spell exactly `want`; None if they don't."""
    got = b""
    order = reversed(tokens) if tail else iter(tokens)
    for k, tok in enumerate(order, 1):
        if not isinstance(tok, int):
            return None
        got = piece(tok) + got if tail else got + piece(tok)
        if len(got) >= len(want):
            return k if got == want else None
    return None


def drop_duplicate_view(
    planned: list[tuple[Any, list[Unit]]], piece: Callable[[int], bytes]
) -> list[tuple[Any, list[Unit]]]:
    """Keep one 64-token view where mtmd gives idefics3 a 1x1 grid: its tile and its overview are the same picture
    at the same 512 px, so the tile only doubles encoding and prefill. What is left is the prompt Hugging Face's
    Idefics3 processor writes for an image it does not split (`<fake_token_around_image><global-img>` + image).
    `planned` is (chunk, units) per mtmd chunk; text chunks hold token ids, image chunks one ImageUnit.
    """
    images: dict[str, list[int]] = {}
    for i, (_, units) in enumerate(planned):
        if isinstance(units[0], ImageUnit):
            images.setdefault(units[0].key, []).append(i)
    drop: dict[int, tuple[int, int]] = {}  # chunk index -> (tokens cut at the head, at the tail); -1: the chunk
    for tile, overview in (at for at in images.values() if len(at) == 2):
        if not (tile > 0 and overview == tile + 2):
            continue
        before, between = planned[tile - 1][1], planned[tile + 1][1]
        cut_tail = _split_bytes(before, piece, _TILE_OPEN, tail=True)
        cut_head = _split_bytes(between, piece, _GRID_END, tail=False)
        if cut_tail is None or cut_head is None:
            continue
        if _split_bytes(between[cut_head:], piece, _OVERVIEW_OPEN, tail=False) != len(between) - cut_head:
            continue
        head, _ = drop.get(tile - 1, (0, 0))
        drop[tile - 1] = (head, cut_tail)
        drop[tile] = (-1, -1)
        drop[tile + 1] = (cut_head, 0)
    out = []
    for i, (chunk, units) in enumerate(planned):
        head, tail = drop.get(i, (0, 0))
        if head < 0:
            continue
        kept = units[head : len(units) - tail]
        if kept:
            out.append((chunk, kept))
    return out


def image_key(width: int, height: int, rgb: bytes, image_max_tokens: int | None) -> str:
    """Identity of an image as the projector sees it: sha256 of its pixels and size, plus the image-token cap."""
    h = hashlib.sha256(f"{width}x{height}:".encode())
    h.update(rgb)
    return f"{h.hexdigest()}:{image_max_tokens or 'default'}"


def pool_slice(embd: np.ndarray, n_embd: int) -> tuple[np.ndarray, int]:
    """One image chunk's projector output (n_tokens x n_embd floats, flat) as (sum over its tokens in float64, the
    token count): slices of a picture add up exactly, whatever order they come in."""
    rows = np.asarray(embd, dtype=np.float32).reshape(-1, n_embd)
    return rows.sum(axis=0, dtype=np.float64), rows.shape[0]


def pooled_vector(parts: Sequence[tuple[np.ndarray, int]]) -> bytes:
    """An image's vector from its slices' (sum, count): the mean over all its tokens, L2-normalized, as float32
    little-endian bytes (b"" for no tokens)."""
    n = sum(count for _, count in parts)
    if not parts or n == 0:
        return b""
    mean = np.sum([total for total, _ in parts], axis=0) / n
    norm = float(np.linalg.norm(mean))
    if norm > 0:
        mean = mean / norm
    return mean.astype("<f4").tobytes()


class PooledCache:
    """Pooled projector outputs by (image key, slice): what an image's search vector is made of, kept even when the
    chunk itself is not evaluated again (its KV state reused) or its full embedding has left the EmbeddingCache.
    A few KB an entry; the least recently used are dropped past `max_items`."""

    def __init__(self, max_items: int = 4096) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, int], tuple[np.ndarray, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, slice_: int) -> tuple[np.ndarray, int] | None:
        """The slice's (sum, count), or None."""
        item = self._items.get((key, slice_))
        if item is not None:
            self._items.move_to_end((key, slice_))
        return item

    def put(self, key: str, slice_: int, part: tuple[np.ndarray, int]) -> None:
        """Keep a slice's (sum, count)."""
        self._items[(key, slice_)] = part
        self._items.move_to_end((key, slice_))
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        self._items.clear()


class EmbeddingCache:
    """Projector outputs by (image key, slice): a retry or second pass on the same image skips encoding.

    Least recently used entries are dropped once the total exceeds `max_bytes` (0 turns the cache off).
    """

    def __init__(self, max_bytes: int = DEFAULT_EMBED_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, slice_: int) -> np.ndarray | None:
        """The stored embedding (marked as recently used), or None."""
        item = self._items.get((key, slice_))
        if item is not None:
            self._items.move_to_end((key, slice_))
        return item

    def put(self, key: str, slice_: int, embd: np.ndarray) -> None:
        """Store a copy of `embd`, evicting the least recently used entries to stay within budget."""
        if embd.nbytes > self.max_bytes:
            return
        old = self._items.pop((key, slice_), None)
        if old is not None:
            self.nbytes -= old.nbytes
        self._items[(key, slice_)] = np.array(embd, dtype=np.float32, copy=True)
        self.nbytes += embd.nbytes
        while self.nbytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self.nbytes -= dropped.nbytes

    def clear(self) -> None:
        """Forget every embedding."""
        self._items.clear()
        self.nbytes = 0
