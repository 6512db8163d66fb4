"""The llama.cpp backend's prefill: the context sized to the request, the KV-cache prefix a request shares with the
last one kept, the task prompt's KV state loaded from / saved to the on-disk prefix store, image chunks encoded
once (a mixin of LlamaCppBackend, which holds the state)."""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from typing import Any

import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
import numpy as np
from llama_cpp._internals import LlamaBatch, LlamaContext
from llama_cpp._utils import suppress_stdout_stderr
from loupe.backends.prefix_store import MIN_TOKENS, PrefixStore
from loupe.backends.reuse import EmbeddingCache, ImageUnit, Unit, drop_duplicate_view, reusable_prefix, unit_len
from loupe.core.errors import BackendError

# what _prefill reports in Generation.timings: times (ms), tokens evaluated, image chunks encoded vs from cache
PREFILL_COUNTS = ("encode_ms", "prefill_ms", "prefill_tokens", "reused_tokens", "image_chunks_encoded",
                  "image_chunks_cached", "prefix_tokens_from_disk")
_NO_CALLBACK = mtmd.mtmd_helper_post_decode_callback()  # a NULL function pointer
_NO_ABORT = llama_cpp.ggml_abort_callback()  # a NULL function pointer
_ABORTED = 2  # what llama_decode returns when the abort callback stopped it (llama.cpp removes that ubatch)


def _too_long(planned: list[tuple[Any, list[Unit]]], n_ctx: int, max_tokens: int) -> str:
    """Why a prompt does not fit, naming the part that makes it too long."""
    image = sum(unit_len(u) for _, units in planned if isinstance(units[0], ImageUnit) for u in units)
    text = sum(unit_len(u) for _, units in planned if not isinstance(units[0], ImageUnit) for u in units)
    fix = ("shorten the task's schema or instructions (a long enum, many properties)" if text + max_tokens >= n_ctx
           else "lower the image detail or send fewer images")
    return (f"the prompt does not fit the model's context of {n_ctx} tokens: {text} tokens of task text (instructions "
            f"and schema) + {image} image tokens + max_tokens {max_tokens}; {fix}")


class PrefillCancelled(Exception):
    """The cancel event was set while llama.cpp evaluated the prompt; the KV cache holds nothing reusable."""


class PrefillMixin:
    """Prompt evaluation for a LlamaCppBackend: what reaches the KV cache and what is reused."""

    verbose: bool
    _llm: llama_cpp.Llama
    _ctx: Any
    _mtmd: Any
    _max_ctx: int
    _batch: LlamaBatch
    _n_batch: int
    _kv: list[Unit]
    _threads_now: int
    _abort_cb: Any  # the ctypes callback llama.cpp holds while a prompt is evaluated
    _cancel: threading.Event | None
    _embeds: EmbeddingCache
    _prefix_store: PrefixStore | None
    _model_key: str
    _n_embd: int

    _units: Callable[[Any], list[tuple[Any, list[Unit]]]]  # loupe.backends.llama_mtmd
    _special_piece: Callable[[int], bytes]  # loupe.backends.llama_cpp

    @property
    def n_ctx(self) -> int:
        """Positions the context holds now (it grows per request up to `capabilities.max_context`)."""
        return int(self._llm.n_ctx())

    def _fit_context(self, need: int, whole: int = 0) -> None:
        """Grow the context (and its KV cache) to a power of two holding `need` positions, within the model's limit,
        and its micro-batch to hold `whole` tokens at once.

        A fixed 8192 costs ~190 MB of KV cache at SmolVLM-256M dims while a detail-low request needs ~1000
        positions; growing drops the cached prefix, so it happens once per larger kind of request, never shrinks.
        `whole`: the largest image chunk llama.cpp must decode in one micro-batch (Gemma 3 attends over its 256 image
        tokens both ways, and llama.cpp aborts the process if they do not fit in n_ubatch).
        """
        have = self._llm.n_ctx()
        params = self._llm.context_params
        grow = need > have and have < self._max_ctx
        if not grow and whole <= params.n_ubatch:
            return
        if whole > params.n_ubatch:
            params.n_ubatch = max(params.n_ubatch, whole)
            params.n_batch = max(params.n_batch, whole)
        if grow:
            params.n_ctx = min(self._max_ctx, max(2 * have, 1 << (need - 1).bit_length()))
        self._llm._ctx.close()
        with suppress_stdout_stderr(disable=self.verbose):
            self._llm._ctx = LlamaContext(model=self._llm._model, params=params, verbose=self.verbose)
        self._ctx = self._llm._ctx.ctx
        self._threads_now = params.n_threads  # a new context starts with the configured count
        self._kv = []

    def _prefill(
        self, prompt: str, bitmaps: list[Any], timings: dict[str, float], slices: dict[str, list[int]],
        max_tokens: int = 0, cancel: threading.Event | None = None,
    ) -> tuple[int, int, int]:
        """Evaluate the prompt, reusing the cached prefix; timings get counts of what was reused and skipped.
        A set `cancel` stops llama.cpp between graph nodes (PrefillCancelled); an image being encoded finishes first
        (mtmd's encoder takes no abort callback)."""
        chunks = mtmd.mtmd_input_chunks_init()
        text = mtmd.mtmd_input_text()
        raw = prompt.encode()
        text.text, text.text_len, text.add_special, text.parse_special = raw, len(raw), True, True
        arr = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
        counts = dict.fromkeys(PREFILL_COUNTS, 0.0)
        n_prompt = n_image = 0
        try:
            rc = mtmd.mtmd_tokenize(self._mtmd, chunks, ctypes.byref(text), arr, len(bitmaps))
            if rc != 0:
                raise BackendError(f"llama.cpp could not tokenize the prompt with {len(bitmaps)} image(s) (code {rc})")
            planned = drop_duplicate_view(self._units(chunks), self._special_piece)
            wanted = [u for _, units in planned for u in units]
            whole = max((mtmd.mtmd_input_chunk_get_n_tokens(c) for c, units in planned
                         if isinstance(units[0], ImageUnit) and mtmd.mtmd_decode_use_non_causal(self._mtmd, c)),
                        default=0)
            self._fit_context(sum(map(unit_len, wanted)) + max_tokens, whole)
            self._watch(cancel)
            n_past, skip = self._keep_prefix(wanted)
            counts["reused_tokens"] = n_past
            self._kv = []  # until this prefill completes, the cache holds nothing we can vouch for
            n_ctx = self._llm.n_ctx()
            for chunk, units in planned:
                n = mtmd.mtmd_input_chunk_get_n_tokens(chunk) if isinstance(units[0], ImageUnit) else len(units)
                if isinstance(units[0], ImageUnit):
                    n_image += n
                    slices.setdefault(units[0].key, []).append(n)
                else:
                    n_prompt += n
                if skip >= len(units):
                    skip -= len(units)
                    continue
                if n_past + n - skip >= n_ctx:  # n_past already counts the `skip` tokens reused
                    raise BackendError(_too_long(planned, n_ctx, max_tokens))
                stored = n_past == 0 and chunk is not planned[-1][0] and self._prefix_key(units)
                if stored and self._prefix_from_disk(stored, len(units)):
                    n_past = counts["prefix_tokens_from_disk"] = counts["reused_tokens"] = len(units)
                    continue
                n_past = self._eval_chunk(chunk, units, skip, n_past, counts)
                if stored:
                    self._prefix_to_disk(stored)
                skip = 0
            self._kv = wanted
        finally:
            self._watch(None)
            mtmd.mtmd_input_chunks_free(chunks)
        timings.update(counts)
        return n_past, n_prompt + n_image, n_image

    def _watch(self, cancel: threading.Event | None) -> None:
        """Have llama.cpp ask `cancel` between graph nodes (None: stop asking). Only while the prompt is evaluated:
        a Python call per node costs ~0.5 ms per forward pass, a few percent of a decoded token, and the decode loop
        checks `cancel` every token anyway."""
        self._cancel = cancel
        if cancel is None:
            self._abort_cb = None
            llama_cpp.llama_set_abort_callback(self._ctx, _NO_ABORT, None)
            return
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: cancel.is_set())  # kept alive while set
        llama_cpp.llama_set_abort_callback(self._ctx, self._abort_cb, None)

    def _prefix_key(self, units: list[Unit]) -> str:
        """The disk entry for a leading text chunk ("" when there is no store or it is too short to be worth it)."""
        if self._prefix_store is None or len(units) < MIN_TOKENS or not all(isinstance(u, int) for u in units):
            return ""
        return self._prefix_store.key(self._model_key, [int(u) for u in units])  # type: ignore[arg-type]

    def _prefix_from_disk(self, key: str, n_tokens: int) -> bool:
        """Load a saved prefix into the empty KV cache; False (cache cleared, entry dropped) when it does not fit."""
        assert self._prefix_store is not None
        data = self._prefix_store.load(key)
        if data is None:
            return False
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        mem = llama_cpp.llama_get_memory(self._ctx)
        with suppress_stdout_stderr(disable=self.verbose):
            read = llama_cpp.llama_state_seq_set_data(self._ctx, buf, len(data), 0)
        if read and int(llama_cpp.llama_memory_seq_pos_max(mem, 0)) == n_tokens - 1:
            return True
        llama_cpp.llama_memory_clear(mem, True)
        self._prefix_store.discard(key)
        return False

    def _prefix_to_disk(self, key: str) -> None:
        """Save the KV state now held (exactly the leading text chunk) for the next process."""
        assert self._prefix_store is not None
        size = int(llama_cpp.llama_state_seq_get_size(self._ctx, 0))
        buf = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(self._ctx, buf, size, 0) == size:
            self._prefix_store.save(key, bytes(buf))

    def _keep_prefix(self, wanted: list[Unit]) -> tuple[int, int]:
        """Trim the KV cache to the prefix `wanted` shares with it: (positions kept, units kept)."""
        mem = llama_cpp.llama_get_memory(self._ctx)
        keep = reusable_prefix(self._kv, wanted)
        n_pos = sum(u.n_pos if isinstance(u, ImageUnit) else 1 for u in wanted[:keep])
        if keep and llama_cpp.llama_memory_seq_rm(mem, 0, n_pos, -1) and self._window_intact(mem, n_pos):
            return n_pos, keep
        llama_cpp.llama_memory_clear(mem, True)
        return 0, 0

    def _window_intact(self, mem: Any, n_pos: int) -> bool:
        """Sliding-window layers (Gemma 3) drop old positions: reuse only if the window before `n_pos` is still
        held (the check llama.cpp's server makes before reusing a prompt)."""
        n_swa = int(llama_cpp.llama_model_n_swa(self._llm.model))
        return n_swa <= 0 or int(llama_cpp.llama_memory_seq_pos_min(mem, 0)) <= max(0, n_pos - n_swa)

    def _eval_chunk(self, chunk: Any, units: list[Unit], skip: int, n_past: int, counts: dict[str, float]) -> int:
        """Evaluate one chunk (its text tokens from `skip` on, or an image, encoding it only if not cached)."""
        t = time.perf_counter()
        unit = units[0]
        if not isinstance(unit, ImageUnit):
            tokens = [u for u in units[skip:] if isinstance(u, int)]
            n_past = self._eval_tokens(tokens, n_past)
            counts["prefill_ms"] += (time.perf_counter() - t) * 1000
            counts["prefill_tokens"] += len(tokens)
            return n_past
        n = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
        embd = self._embeds.get(unit.key, unit.slice)
        if embd is None:
            if self._cancel is not None and self._cancel.is_set():  # the encoder cannot be stopped once started
                raise PrefillCancelled
            if mtmd.mtmd_encode_chunk(self._mtmd, chunk) != 0:
                raise BackendError("llama.cpp failed to encode an image")
            out = mtmd.mtmd_get_output_embd(self._mtmd)
            embd = np.ctypeslib.as_array(out, shape=(n * self._n_embd,))
            self._embeds.put(unit.key, unit.slice, embd)
            counts["image_chunks_encoded"] += 1
        else:
            counts["image_chunks_cached"] += 1
        t_enc = time.perf_counter()
        counts["encode_ms"] += (t_enc - t) * 1000
        new_past = llama_cpp.llama_pos(0)
        ptr = embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        rc = mtmd.mtmd_helper_decode_image_chunk(
            self._mtmd, self._ctx, chunk, ptr, n_past, 0, max(self._n_batch, n), ctypes.byref(new_past), _NO_CALLBACK,
            None,
        )
        if rc == _ABORTED:
            raise PrefillCancelled
        if rc != 0:
            raise BackendError(f"llama.cpp failed to decode image embeddings (code {rc})")
        counts["prefill_ms"] += (time.perf_counter() - t_enc) * 1000
        counts["prefill_tokens"] += n
        return int(new_past.value)

    def _eval_tokens(self, tokens: list[int], n_past: int) -> int:
        for i in range(0, len(tokens), self._n_batch):
            part = tokens[i : i + self._n_batch]
            self._batch.set_batch(part, n_past, logits_all=False)
            rc = llama_cpp.llama_decode(self._ctx, self._batch.batch)
            if rc == _ABORTED:
                raise PrefillCancelled
            if rc != 0:
                raise BackendError(f"llama.cpp decode failed (code {rc})")
            n_past += len(part)
        return n_past
