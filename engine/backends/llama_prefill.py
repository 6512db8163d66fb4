"""The llama.cpp backend's prompt evaluation as one object, so what the KV cache holds is tracked in one place.

The context is sized to the request, the KV-cache prefix a request shares with the last one is kept, the task
prompt's KV state is loaded from / saved to the on-disk prefix store, and image chunks are encoded once (their
embeddings kept by content)."""

from __future__ import annotations

import threading
import time
from typing import Any

from loupe.backends.llama_model import LlamaModel, PrefillCancelled
from loupe.backends.llama_mtmd import Chunk, MtmdEncoder, Planned
from loupe.backends.prefix_store import MIN_TOKENS, PrefixStore
from loupe.backends.reuse import (
    EmbeddingCache,
    ImageUnit,
    PooledCache,
    Unit,
    drop_duplicate_view,
    pool_slice,
    pooled_vector,
    reusable_prefix,
    unit_len,
)
from loupe.core.errors import BackendError

__all__ = ["PREFILL_COUNTS", "PrefillCancelled", "Prefiller", "SavedPrefixes"]

# what prefill reports in Generation.timings: times (ms), tokens evaluated, image chunks encoded vs from cache
PREFILL_COUNTS = (
    "encode_ms",
    "prefill_ms",
    "prefill_tokens",
    "reused_tokens",
    "image_chunks_encoded",
    "image_chunks_cached",
    "prefix_tokens_from_disk",
)


def _too_long(planned: Planned, n_ctx: int, max_tokens: int) -> str:
    """Why a prompt does not fit, naming the part that makes it too long."""
    image = sum(unit_len(u) for _, units in planned if isinstance(units[0], ImageUnit) for u in units)
    text = sum(unit_len(u) for _, units in planned if not isinstance(units[0], ImageUnit) for u in units)
    fix = (
        "shorten the task's schema or instructions (a long enum, many properties)"
        if text + max_tokens >= n_ctx
        else "lower the image detail or send fewer images"
    )
    return (
        f"the prompt does not fit the model's context of {n_ctx} tokens: {text} tokens of task text (instructions "
        f"and schema) + {image} image tokens + max_tokens {max_tokens}; {fix}"
    )


class SavedPrefixes:
    """A model's task-prompt KV states in a PrefixStore: keyed by the model's identity and the exact tokens."""

    def __init__(self, store: PrefixStore, model: LlamaModel) -> None:
        self.store = store
        self._model = model

    def key(self, units: list[Unit]) -> str:
        """The entry for a leading text chunk ("" when it is too short to be worth it)."""
        if len(units) < MIN_TOKENS or not all(isinstance(u, int) for u in units):
            return ""
        return self.store.key(self._model.key, [int(u) for u in units])  # type: ignore[arg-type]

    def load(self, key: str, n_tokens: int) -> bool:
        """Load a saved prefix into the empty KV cache; False (cache cleared, entry dropped) when it does not fit."""
        data = self.store.load(key)
        if data is None:
            return False
        if self._model.load_state(data, n_tokens):
            return True
        self.store.discard(key)
        return False

    def save(self, key: str) -> None:
        """Save the KV state now held (exactly the leading text chunk) for the next process."""
        data = self._model.save_state()
        if data is not None:
            self.store.save(key, data)


class Prefiller:
    """Evaluates prompts into a model's context through its projector, tracking what the KV cache holds.

    `embeds`: image embeddings kept by content; `saved`: task-prompt KV states on disk (None: none).
    Each image chunk's projector output is also pooled as it goes by (`pooled`, kept by content like `embeds`), so
    every prefill can hand back one search vector per image without encoding anything again."""

    def __init__(
        self, model: LlamaModel, encoder: MtmdEncoder, embeds: EmbeddingCache, saved: SavedPrefixes | None
    ) -> None:
        self.model = model
        self.encoder = encoder
        self.embeds = embeds
        self.saved = saved
        self.kv: list[Unit] = []  # what the KV cache holds for sequence 0, in order (prompt units only)
        self.pooled = PooledCache()

    def forget(self) -> None:
        """Drop the reusable prompt prefix and the image embeddings (the next request runs cold)."""
        self.model.clear()
        self.kv = []
        self.embeds.clear()
        self.pooled.clear()

    def prefill(
        self,
        prompt: str,
        bitmaps: list[Any],
        timings: dict[str, float],
        slices: dict[str, list[int]],
        max_tokens: int = 0,
        cancel: threading.Event | None = None,
        vectors: dict[str, bytes] | None = None,
    ) -> tuple[int, int, int]:
        """Evaluate the prompt, reusing the cached prefix; timings get counts of what was reused and skipped.
        Returns (positions filled, prompt tokens with images, image tokens); `slices` gets each image's chunk sizes.
        A set `cancel` stops llama.cpp between graph nodes (PrefillCancelled); an image being encoded finishes first
        (mtmd's encoder takes no abort callback). `vectors` gets each image key's pooled vector (mean of its
        projector output over all its tokens, L2-normalized, float32 bytes; reuse.pooled_vector)."""
        counts = dict.fromkeys(PREFILL_COUNTS, 0.0)
        n_prompt = n_image = 0
        with self.encoder.tokenize(prompt, bitmaps) as chunks:
            try:
                planned = drop_duplicate_view(chunks, self.model.special_piece)
                wanted = [u for _, units in planned for u in units]
                whole = self.encoder.largest_whole(planned)
                if self.model.fit_context(sum(map(unit_len, wanted)) + max_tokens, whole):
                    self.kv = []  # a new context: its KV cache is empty
                self.model.watch(cancel)
                n_past, skip = self._keep_prefix(wanted)
                counts["reused_tokens"] = n_past
                self.kv = []  # until this prefill completes, the cache holds nothing we can vouch for
                n_ctx = self.model.n_ctx
                for chunk, units in planned:
                    n = self.encoder.n_tokens(chunk) if isinstance(units[0], ImageUnit) else len(units)
                    if isinstance(units[0], ImageUnit):
                        n_image += n
                        slices.setdefault(units[0].key, []).append(n)
                    else:
                        n_prompt += n
                    if skip >= len(units):
                        skip -= len(units)
                        if isinstance(units[0], ImageUnit):
                            self._pool_kept(units[0])
                        continue
                    if n_past + n - skip >= n_ctx:  # n_past already counts the `skip` tokens reused
                        raise BackendError(_too_long(planned, n_ctx, max_tokens))
                    # only the leading text chunk (task instructions and schema) is worth a file
                    saved = self.saved if n_past == 0 and chunk is not planned[-1][0] else None
                    stored = saved.key(units) if saved is not None else ""
                    if saved is not None and stored and saved.load(stored, len(units)):
                        n_past = counts["prefix_tokens_from_disk"] = counts["reused_tokens"] = len(units)
                        continue
                    n_past = self._eval_chunk(chunk, units, skip, n_past, counts, cancel)
                    if saved is not None and stored:
                        saved.save(stored)
                    skip = 0
                self.kv = wanted
                if vectors is not None:
                    vectors.update(self._vectors(planned))
            finally:
                self.model.watch(None)
        timings.update(counts)
        return n_past, n_prompt + n_image, n_image

    def _pool_kept(self, unit: ImageUnit) -> None:
        """An image chunk whose KV state was reused: pool it from the embedding cache if not pooled yet."""
        if self.pooled.get(unit.key, unit.slice) is None:
            embd = self.embeds.get(unit.key, unit.slice)
            if embd is not None:
                self.pooled.put(unit.key, unit.slice, pool_slice(embd, self.model.n_embd))

    def _vectors(self, planned: Planned) -> dict[str, bytes]:
        """Each image key's vector from its slices' pooled parts (a key with a part missing gets none)."""
        slices: dict[str, set[int]] = {}
        for _, units in planned:
            if isinstance(units[0], ImageUnit):
                slices.setdefault(units[0].key, set()).add(units[0].slice)
        out = {}
        for key, which in slices.items():
            parts = [self.pooled.get(key, i) for i in sorted(which)]
            if all(p is not None for p in parts):
                out[key] = pooled_vector([p for p in parts if p is not None])
        return out

    def _keep_prefix(self, wanted: list[Unit]) -> tuple[int, int]:
        """Trim the KV cache to the prefix `wanted` shares with it: (positions kept, units kept)."""
        keep = reusable_prefix(self.kv, wanted)
        n_pos = sum(u.n_pos if isinstance(u, ImageUnit) else 1 for u in wanted[:keep])
        if keep and self.model.trim(n_pos):
            return n_pos, keep
        self.model.clear()
        return 0, 0

    def _eval_chunk(
        self,
        chunk: Chunk,
        units: list[Unit],
        skip: int,
        n_past: int,
        counts: dict[str, float],
        cancel: threading.Event | None,
    ) -> int:
        """Evaluate one chunk (its text tokens from `skip` on, or an image, encoding it only if not cached)."""
        t = time.perf_counter()
        unit = units[0]
        if not isinstance(unit, ImageUnit):
            tokens = [u for u in units[skip:] if isinstance(u, int)]
            n_past = self.model.eval_tokens(tokens, n_past)
            counts["prefill_ms"] += (time.perf_counter() - t) * 1000
            counts["prefill_tokens"] += len(tokens)
            return n_past
        embd = self.embeds.get(unit.key, unit.slice)
        if embd is None:
            if cancel is not None and cancel.is_set():  # the encoder cannot be stopped once started
                raise PrefillCancelled
            embd = self.encoder.encode(chunk)
            self.embeds.put(unit.key, unit.slice, embd)
            counts["image_chunks_encoded"] += 1
        else:
            counts["image_chunks_cached"] += 1
        t_enc = time.perf_counter()
        counts["encode_ms"] += (t_enc - t) * 1000
        if self.pooled.get(unit.key, unit.slice) is None:
            self.pooled.put(unit.key, unit.slice, pool_slice(embd, self.model.n_embd))
        new_past = self.encoder.decode(chunk, embd, n_past)
        counts["prefill_ms"] += (time.perf_counter() - t_enc) * 1000
        counts["prefill_tokens"] += self.encoder.n_tokens(chunk)
        return new_past
