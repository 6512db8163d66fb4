"""The llama.cpp text model and its context (KV cache) as one object, so only it touches the context it owns."""

from __future__ import annotations

import ctypes
import platform
import threading
import time
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaBatch, LlamaContext
from llama_cpp._utils import suppress_stdout_stderr
from loupe.backends.decode import Feed, TokenVocab
from loupe.backends.gguf_file import repacked
from loupe.backends.llama_cpu import CpuPlan, load_llama
from loupe.backends.thread_tuner import ThreadTuner
from loupe.core.errors import BackendError, ModelLoadError

_NO_ABORT = llama_cpp.ggml_abort_callback()  # a NULL function pointer
ABORTED = 2  # what llama_decode returns when the abort callback stopped it (llama.cpp removes that ubatch)


class PrefillCancelled(Exception):
    """The cancel event was set while llama.cpp evaluated the prompt; the KV cache holds nothing reusable."""


class LlamaModel:
    """A loaded GGUF text model with its one context: what evaluates tokens, reads logits and holds the KV cache.

    The context starts at `n_ctx_start` positions and is remade larger on demand (`fit_context`) up to `n_ctx`
    (within what the model was trained for)."""

    def __init__(
        self,
        text_path: Path,
        *,
        cpu: CpuPlan,
        n_ctx: int,
        n_ctx_start: int,
        threads: int,
        n_batch: int,
        n_ubatch: int,
        use_mmap: bool | None,
        verbose: bool,
    ) -> None:
        """`use_mmap`: None maps the file unless llama.cpp repacks its weights on this CPU (see LlamaCppBackend)."""
        self.text_path = text_path
        self.verbose = verbose
        if use_mmap is None:
            use_mmap = not (cpu.extra_buffers and repacked(text_path, platform.machine()))
        try:
            with suppress_stdout_stderr(disable=verbose):
                self.llm: llama_cpp.Llama | None = load_llama(
                    cpu,
                    model_path=str(text_path),
                    n_ctx=min(n_ctx, n_ctx_start),  # the KV cache grows to what a request needs (fit_context)
                    n_batch=n_batch,
                    # llama.cpp splits a batch into ubatches; the compute buffer is sized for one: 128 tokens take
                    # ~17 MB less peak memory than 512 at SmolVLM-256M dims, with no measurable prefill cost on 2 cores
                    n_ubatch=min(n_ubatch, n_batch),
                    n_threads=threads,
                    n_threads_batch=threads,
                    use_mmap=use_mmap,
                    logits_all=False,
                    verbose=verbose,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load the text model {text_path} ({exc}); the file may be "
                "truncated or corrupt: run `loupe models verify`"
            ) from None
        llm = self.llm
        self.ctx: llama_cpp.llama_context_p = llm._ctx.ctx
        self.max_ctx = min(n_ctx, int(llama_cpp.llama_model_n_ctx_train(llm.model)) or n_ctx)
        self.vocab: llama_cpp.llama_vocab_p = llama_cpp.llama_model_get_vocab(llm.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_embd = int(llama_cpp.llama_model_n_embd_inp(llm.model))
        self.threads = threads
        self.threads_now = threads  # the context's thread count now (fewer only while a tuner decodes)
        self.n_batch = n_batch
        self.batch = LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        st = text_path.stat()
        # what a saved KV state was made by: this file, this llama.cpp (loupe.backends.prefix_store)
        self.key = f"{text_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|llama.cpp {llama_cpp.__version__}"
        self.chat_template: str | None = llm.metadata.get("tokenizer.chat_template")
        self._pieces: dict[int, bytes] = {}
        self._tv: TokenVocab | None = None
        self._abort_cb: llama_cpp.ggml_abort_callback | None = None  # kept alive while llama.cpp holds it

    def live(self) -> llama_cpp.Llama:
        """The loaded model (BackendError once closed)."""
        if self.llm is None:
            raise BackendError("the llama.cpp model is closed")
        return self.llm

    @property
    def n_ctx(self) -> int:
        """Positions the context holds now."""
        return int(self.live().n_ctx())

    # -- the context ----------------------------------------------------------------------------
    def fit_context(self, need: int, whole: int = 0) -> bool:
        """Grow the context (and its KV cache) to a power of two holding `need` positions, within the model's limit,
        and its micro-batch to hold `whole` tokens at once; True when it was remade (the KV cache is then empty).

        A fixed 8192 costs ~190 MB of KV cache at SmolVLM-256M dims while a detail-low request needs ~1000
        positions; growing drops the cached prefix, so it happens once per larger kind of request, never shrinks.
        `whole`: the largest image chunk llama.cpp must decode in one micro-batch (Gemma 3 attends over its 256 image
        tokens both ways, and llama.cpp aborts the process if they do not fit in n_ubatch).
        """
        llm = self.live()
        have = llm.n_ctx()
        params = llm.context_params
        grow = need > have and have < self.max_ctx
        if not grow and whole <= params.n_ubatch:
            return False
        if whole > params.n_ubatch:
            params.n_ubatch = max(params.n_ubatch, whole)
            params.n_batch = max(params.n_batch, whole)
        if grow:
            params.n_ctx = min(self.max_ctx, max(2 * have, 1 << (need - 1).bit_length()))
        llm._ctx.close()
        with suppress_stdout_stderr(disable=self.verbose):
            llm._ctx = LlamaContext(model=llm._model, params=params, verbose=self.verbose)
        self.ctx = llm._ctx.ctx
        self.threads_now = params.n_threads  # a new context starts with the configured count
        return True

    def set_threads(self, n: int) -> None:
        """The thread count the context evaluates with from now on."""
        if n != self.threads_now:
            llama_cpp.llama_set_n_threads(self.ctx, n, n)
            self.threads_now = n

    def watch(self, cancel: threading.Event | None) -> None:
        """Have llama.cpp ask `cancel` between graph nodes (None: stop asking). Only while the prompt is evaluated:
        a Python call per node costs ~0.5 ms per forward pass, a few percent of a decoded token, and the decode loop
        checks `cancel` every token anyway."""
        if cancel is None:
            self._abort_cb = None
            llama_cpp.llama_set_abort_callback(self.ctx, _NO_ABORT, None)
            return
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: cancel.is_set())  # kept alive while set
        llama_cpp.llama_set_abort_callback(self.ctx, self._abort_cb, None)

    # -- the KV cache ---------------------------------------------------------------------------
    def clear(self) -> None:
        """Empty the KV cache."""
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)

    def trim(self, n_pos: int) -> bool:
        """Keep only the first `n_pos` positions of sequence 0; False when they cannot be reused as they are."""
        mem = llama_cpp.llama_get_memory(self.ctx)
        return bool(llama_cpp.llama_memory_seq_rm(mem, 0, n_pos, -1)) and self._window_intact(mem, n_pos)

    def _window_intact(self, mem: llama_cpp.llama_memory_t, n_pos: int) -> bool:
        """Sliding-window layers (Gemma 3) drop old positions: reuse only if the window before `n_pos` is still
        held (the check llama.cpp's server makes before reusing a prompt)."""
        n_swa = int(llama_cpp.llama_model_n_swa(self.live().model))
        return n_swa <= 0 or int(llama_cpp.llama_memory_seq_pos_min(mem, 0)) <= max(0, n_pos - n_swa)

    def save_state(self) -> bytes | None:
        """Sequence 0's KV state as bytes (None when llama.cpp could not write it)."""
        size = int(llama_cpp.llama_state_seq_get_size(self.ctx, 0))
        buf = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(self.ctx, buf, size, 0) == size:
            return bytes(buf)
        return None

    def load_state(self, data: bytes, n_tokens: int) -> bool:
        """Load a saved state into the empty KV cache; False (cache cleared) unless it holds exactly `n_tokens`."""
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        mem = llama_cpp.llama_get_memory(self.ctx)
        with suppress_stdout_stderr(disable=self.verbose):
            read = llama_cpp.llama_state_seq_set_data(self.ctx, buf, len(data), 0)
        if read and int(llama_cpp.llama_memory_seq_pos_max(mem, 0)) == n_tokens - 1:
            return True
        llama_cpp.llama_memory_clear(mem, True)
        return False

    # -- tokens in, logits out ------------------------------------------------------------------
    def eval_tokens(self, tokens: list[int], n_past: int) -> int:
        """Evaluate `tokens` from position `n_past` in batches; the position after them."""
        for i in range(0, len(tokens), self.n_batch):
            part = tokens[i : i + self.n_batch]
            self.batch.set_batch(part, n_past, logits_all=False)
            rc = llama_cpp.llama_decode(self.ctx, self.batch.batch)
            if rc == ABORTED:
                raise PrefillCancelled
            if rc != 0:
                raise BackendError(f"llama.cpp decode failed (code {rc})")
            n_past += len(part)
        return n_past

    def logits(self) -> np.ndarray:
        """The last position's logits, as a view on llama.cpp's buffer (no copy)."""
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))

    def feed(self, n_past: int, tuner: ThreadTuner | None) -> Feed:
        """The decode loop's feed (loupe.backends.decode) from position `n_past`; with a tuner, each step runs on the
        thread count it picks and single-token steps report their time to it."""
        past = n_past

        def feed(tokens: list[int]) -> np.ndarray:
            nonlocal past
            if tuner is None:
                past = self.eval_tokens(tokens, past)
                return self.logits()
            # the grammar's forced runs (a few tokens at once) use the same count: OpenMP threads left spinning
            # after a wider region would take the core back from the one decoding
            n = tuner.next_threads()
            self.set_threads(n)
            t = time.perf_counter()
            past = self.eval_tokens(tokens, past)
            if len(tokens) == 1:
                tuner.record(n, time.perf_counter() - t)
            return self.logits()

        return feed

    # -- the vocabulary -------------------------------------------------------------------------
    def piece(self, token: int) -> bytes:
        """A token's text as bytes (cached)."""
        piece = self._pieces.get(token)
        if piece is None:
            buf = ctypes.create_string_buffer(256)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 256, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
            piece = self._pieces[token] = buf.raw[:n]
        return piece

    def special_piece(self, token: int) -> bytes:
        """A token's text with control tokens spelled out (`<global-img>`), as the chat template writes them."""
        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 256, 0, True)
        return buf.raw[: max(0, n)]

    def eos_tokens(self) -> list[int]:
        """The end-of-generation tokens, the model's own EOS first."""
        eog = [t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)]
        first = int(llama_cpp.llama_vocab_eos(self.vocab))
        return ([first] if first >= 0 else []) + [t for t in eog if t != first]

    def token_vocab(self) -> TokenVocab:
        """What the shared decode loop needs of this tokenizer (end tokens scanned once)."""
        if self._tv is None:
            self._tv = TokenVocab(self.n_vocab, self.piece, frozenset(self.eos_tokens()))
        return self._tv

    def close(self) -> None:
        """Free the batch, the context and the weights (again: nothing)."""
        if self.llm is not None:
            self.batch.close()
            self.llm.close()
            self.llm = None
