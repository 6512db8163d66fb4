"""llama.cpp backend: a GGUF text model + mmproj through llama-cpp-python, decoded under our own mask.

We drive llama.cpp's low-level API ourselves instead of `MTMDChatHandler` + `create_completion`:
that path applies a GBNF grammar to the whole vocabulary per token, silently falls back to generic
JSON when a schema fails to convert, and needs `logits_all=True` (~75 ms/token) for probabilities.
Here each step reads only the last logits, masks them with the compiled constraint, and keeps the
renormalised probability of the chosen token for per-field confidence.
Work is not repeated between requests: the KV cache keeps the prompt prefix a new request shares with the
last one (the task's text comes before the images, see engine.prompt), and projector outputs are kept by
image content (engine.backends.reuse), so a retry or second pass on the same image skips encoding.
Memory follows the request: the context (KV cache) starts at 1024 positions and grows to the next power of two a
request needs (prompt + images + max_tokens) up to n_ctx, and a 1x1 idefics3 grid is encoded once, not twice.
"""

from __future__ import annotations

import ctypes
import importlib.util
import platform
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import jinja2.sandbox
import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
import numpy as np
from llama_cpp._internals import LlamaBatch, LlamaContext
from llama_cpp._utils import suppress_stdout_stderr

from engine.backends.base import Capabilities, Generation, GenerationRequest
from engine.backends.decode import TokenVocab, decode
from engine.backends.gguf_file import check_gguf, projector_type, repacked
from engine.backends.prefix_store import MIN_TOKENS, PrefixStore
from engine.backends.reuse import (
    DEFAULT_EMBED_CACHE_BYTES,
    EmbeddingCache,
    ImageUnit,
    Unit,
    drop_duplicate_view,
    image_key,
    reusable_prefix,
    unit_len,
)
from engine.constrain.base import Constraint
from engine.constrain.llguidance import LLGuidanceCompiler
from engine.errors import BackendError, ModelLoadError
from engine.hardware import default_threads
from engine.images.resize import DETAIL_IMAGE_TOKENS
from engine.prompt import MEDIA

# what _prefill reports in Generation.timings: times (ms), tokens evaluated, image chunks encoded vs from cache
PREFILL_COUNTS = ("encode_ms", "prefill_ms", "prefill_tokens", "reused_tokens", "image_chunks_encoded",
                  "image_chunks_cached", "prefix_tokens_from_disk")
_NO_CALLBACK = mtmd.mtmd_helper_post_decode_callback()  # a NULL function pointer
# projectors that always make the same number of image tokens: mtmd ignores image_max_tokens for them, so their
# context is never remade for another cap (remaking reloads the projector: ~0.3 s for SmolVLM's, seconds for Gemma's)
FIXED_SIZE_PROJECTORS = frozenset({"gemma3"})


def _route_mtmd_logs() -> None:
    """Send mtmd/clip logs through llama-cpp-python's logger (quiet unless verbose), not raw stderr."""
    from llama_cpp._logger import llama_log_callback

    mtmd.mtmd_log_set(llama_log_callback, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(llama_log_callback, ctypes.c_void_p(0))


def _llguidance(vocab: Any, n_vocab: int, eos: list[int]) -> Any:
    from llguidance.llamacpp import lltokenizer_from_vocab

    return LLGuidanceCompiler(lltokenizer_from_vocab(vocab, n_vocab=n_vocab, eos_token=eos))


def _gbnf(vocab: Any, n_vocab: int, eos: list[int]) -> Any:
    from engine.constrain.gbnf import GbnfCompiler

    return GbnfCompiler(vocab, eos)


# the default is LLGuidance; llama.cpp's GBNF stays selectable for comparison (see bench.schema_coverage)
CONSTRAINT_ENGINES = {"llguidance": _llguidance, "gbnf": _gbnf}


class LlamaCppBackend:
    """A loaded llama.cpp model with its multimodal projector."""

    name: ClassVar[str] = "llama_cpp"
    steerable: ClassVar[bool] = True

    def __init__(
        self,
        text_path: str | Path,
        mmproj_path: str | Path,
        *,
        model_id: str | None = None,
        n_ctx: int = 8192,
        n_ctx_start: int = 1024,
        n_threads: int | None = None,
        n_batch: int = 512,
        n_ubatch: int = 128,
        constraint_engine: str = "llguidance",
        embed_cache_bytes: int = DEFAULT_EMBED_CACHE_BYTES,
        image_max_tokens: int | None = DETAIL_IMAGE_TOKENS["low"],
        prefix_store: PrefixStore | None = None,
        use_mmap: bool | None = None,
        verbose: bool = False,
    ) -> None:
        """`image_max_tokens`: the image-token cap the projector is first made with; the default is the default
        detail's (`low`), so the usual first request does not reload the projector for its cap.
        `prefix_store`: where the task prompt's KV state is kept between processes (None: nowhere).
        `use_mmap`: None maps the file unless llama.cpp repacks its weights on this CPU (Q4_K, Q4_0, ... on x86-64):
        mapped, those pages stay resident beside the repacked copy (llama.cpp #16761), +2 GB for Gemma 3 4B Q4_K_M."""
        t0 = time.perf_counter()
        self.text_path, self.mmproj_path = Path(text_path), Path(mmproj_path)
        check_gguf(self.text_path, "text model")
        check_gguf(self.mmproj_path, "mmproj (vision projector)")
        self.model_id = model_id or self.text_path.stem
        if constraint_engine not in CONSTRAINT_ENGINES:
            known = ", ".join(CONSTRAINT_ENGINES)
            raise BackendError(f"unknown constraint engine {constraint_engine!r} (known: {known})")
        self.constraint_engine = constraint_engine
        self.verbose = verbose
        threads = n_threads or default_threads()
        try:
            with suppress_stdout_stderr(disable=verbose):
                self._llm = llama_cpp.Llama(
                    model_path=str(self.text_path),
                    n_ctx=min(n_ctx, n_ctx_start),  # the KV cache grows to what a request needs (_fit_context)
                    n_batch=n_batch,
                    # llama.cpp splits a batch into ubatches; the compute buffer is sized for one: 128 tokens take
                    # ~17 MB less peak memory than 512 at SmolVLM-256M dims, with no measurable prefill cost on 2 cores
                    n_ubatch=min(n_ubatch, n_batch),
                    n_threads=threads,
                    n_threads_batch=threads,
                    use_mmap=not repacked(self.text_path, platform.machine()) if use_mmap is None else use_mmap,
                    logits_all=False,
                    verbose=verbose,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load the text model {self.text_path} ({exc}); the file may be "
                "truncated or corrupt: run `loupe models verify`"
            ) from None
        self._ctx = self._llm._ctx.ctx
        self._max_ctx = min(n_ctx, int(llama_cpp.llama_model_n_ctx_train(self._llm.model)) or n_ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._threads = threads
        self._projector = projector_type(self.mmproj_path)
        if self._projector in FIXED_SIZE_PROJECTORS:
            image_max_tokens = None
        self._mtmd_cap: int | None = image_max_tokens
        self._mtmd = self._init_mtmd(threads, image_max_tokens)
        self._template = self._chat_template()
        self._batch = LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self._n_batch = n_batch
        self._pieces: dict[int, bytes] = {}
        self._tv: TokenVocab | None = None
        self._compiler: Any = None
        self._kv: list[Unit] = []  # what the KV cache holds for sequence 0, in order (prompt units only)
        self._embeds = EmbeddingCache(embed_cache_bytes)
        self._prefix_store = prefix_store
        st = self.text_path.stat()
        self._model_key = f"{self.text_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|llama.cpp {llama_cpp.__version__}"
        self._n_embd = int(llama_cpp.llama_model_n_embd_inp(self._llm.model))
        self._lock = threading.Lock()
        self.capabilities = Capabilities(max_context=self._max_ctx)
        self.load_ms = (time.perf_counter() - t0) * 1000

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def is_available(cls) -> bool:
        """Whether llama-cpp-python is installed."""
        return importlib.util.find_spec("llama_cpp") is not None

    def _init_mtmd(self, threads: int, image_max_tokens: int | None) -> Any:
        _route_mtmd_logs()
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = threads
        params.warmup = False
        if image_max_tokens:
            params.image_max_tokens = image_max_tokens
        with suppress_stdout_stderr(disable=self.verbose):
            ctx = mtmd.mtmd_init_from_file(str(self.mmproj_path).encode(), self._llm.model, params)
        if ctx is None:
            self._llm.close()
            raise ModelLoadError(
                f"llama.cpp could not load the mmproj {self.mmproj_path}: it is corrupt, truncated, or not "
                "the projector for this text model (run `loupe models verify`, or pass the matching --mmproj)"
            )
        if not mtmd.mtmd_support_vision(ctx):
            mtmd.mtmd_free(ctx)
            self._llm.close()
            raise ModelLoadError(f"{self.mmproj_path} is not a vision projector (no image support)")
        return ctx

    def _chat_template(self) -> jinja2.Template:
        source = self._llm.metadata.get("tokenizer.chat_template")
        if not source:
            raise ModelLoadError(f"{self.text_path} has no embedded chat template (tokenizer.chat_template)")
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )

        def raise_exception(message: str) -> None:
            raise BackendError(f"chat template error: {message}")

        env.globals["raise_exception"] = raise_exception
        return env.from_string(source)

    def compile(self, schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> Constraint:
        """Compile for this model's vocabulary (the compiler is built once, on first use)."""
        if self._compiler is None:
            self._compiler = CONSTRAINT_ENGINES[self.constraint_engine](self._vocab, self.n_vocab, self._eos_tokens())
        return self._compiler.compile(schema, allow_refusal=allow_refusal)

    def _eos_tokens(self) -> list[int]:
        eog = [t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, t)]
        first = int(llama_cpp.llama_vocab_eos(self._vocab))
        return ([first] if first >= 0 else []) + [t for t in eog if t != first]

    # -- one generation -------------------------------------------------------------------------
    def render(self, text: str) -> str:
        """The full prompt text: the model's own chat template around one user message."""
        marker = mtmd.mtmd_default_marker().decode()
        messages = [{"role": "user", "content": [{"type": "text", "text": text.replace(MEDIA, marker)}]}]
        return self._template.render(
            messages=messages, add_generation_prompt=True, bos_token="", eos_token=""
        )

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        """Prefill prompt + images, then decode under the constraint (one request at a time)."""
        with self._lock:
            return self._generate(request, cancel)

    def _use_image_cap(self, cap: int | None) -> None:
        """mtmd fixes the image-token cap when its context is made: remake it when a request asks another."""
        if cap == self._mtmd_cap:
            return
        mtmd.mtmd_free(self._mtmd)
        self._mtmd = None
        self._mtmd = self._init_mtmd(self._threads, cap)
        self._mtmd_cap = cap

    def _generate(self, request: GenerationRequest, cancel: threading.Event | None) -> Generation:
        if request.constraint is None:
            raise BackendError("the llama.cpp backend needs a compiled constraint")
        cap = None if self._projector in FIXED_SIZE_PROJECTORS else request.image_max_tokens
        self._use_image_cap(cap)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        bitmaps = [self._bitmap(img.image, img.id, cap) for img in request.images]
        timings["preprocess_ms"] = (time.perf_counter() - t0) * 1000
        steps: dict[str, list[int]] = {}
        keys = [mtmd.mtmd_bitmap_get_id(bm).decode() for bm in bitmaps]
        try:
            n_past, n_prompt, n_image = self._prefill(self.render(request.text), bitmaps, timings, steps,
                                                      request.max_tokens)
        finally:
            for bm in bitmaps:
                mtmd.mtmd_bitmap_free(bm)
        t1 = time.perf_counter()
        gen = self._decode(request, n_past, timings, cancel)
        timings["decode_ms"] = (time.perf_counter() - t1) * 1000
        gen.prompt_tokens, gen.image_tokens, gen.timings = n_prompt, n_image, timings
        gen.image_steps = self._describe_tiling(request, keys, steps)
        return gen

    def _describe_tiling(self, request: GenerationRequest, keys: list[str], slices: dict[str, list[int]]) -> dict:
        """Per image id, how mtmd cut the picture: its slices (overview + tiles for idefics3) and their tokens.
        Each slice covers the whole picture or a grid cell of it, so 0-1000 boxes stay relative to the picture."""
        cap = f", cap {self._mtmd_cap} image tokens" if self._mtmd_cap else ""
        out = {}
        for img, key in zip(request.images, keys, strict=True):
            tokens = slices.get(key, [])
            tokens = tokens[: len(tokens) // keys.count(key)]  # the same picture twice: its slices twice
            out[img.id] = (f"llama.cpp mtmd: {len(tokens)} slice(s) of {'+'.join(map(str, tokens))} tokens{cap}",)
        return out

    def forget(self) -> None:
        """Drop the reusable prompt prefix and the image embeddings (the next request runs cold)."""
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
        self._kv = []
        self._embeds.clear()

    def _bitmap(self, image: Any, image_id: str, cap: int | None) -> Any:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        data = rgb.tobytes()
        buf = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
        bm = mtmd.mtmd_bitmap_init(rgb.width, rgb.height, buf)
        if bm is None:
            raise BackendError(f"llama.cpp could not take image {image_id} ({rgb.width}x{rgb.height})")
        # the id names the content: chunks of the same picture at the same cap find their cached embeddings
        mtmd.mtmd_bitmap_set_id(bm, image_key(rgb.width, rgb.height, data, cap).encode())
        return bm

    def _units(self, chunks: Any) -> list[tuple[Any, list[Unit]]]:
        """Each chunk with the units it puts in the KV cache: its text tokens, or one ImageUnit."""
        out: list[tuple[Any, list[Unit]]] = []
        slices: dict[str, int] = {}
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                size = ctypes.c_size_t()
                ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(size))
                out.append((chunk, [int(ptr[j]) for j in range(size.value)]))
                continue
            key = (mtmd.mtmd_input_chunk_get_id(chunk) or b"").decode()
            slices[key] = slices.get(key, -1) + 1
            out.append((chunk, [ImageUnit(key, slices[key], int(mtmd.mtmd_input_chunk_get_n_pos(chunk)))]))
        return out

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
        self._kv = []

    def _prefill(
        self, prompt: str, bitmaps: list[Any], timings: dict[str, float], slices: dict[str, list[int]],
        max_tokens: int = 0,
    ) -> tuple[int, int, int]:
        """Evaluate the prompt, reusing the cached prefix; timings get counts of what was reused and skipped."""
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
                    raise BackendError(f"prompt needs more than the context of {n_ctx} tokens; lower the image detail")
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
            mtmd.mtmd_input_chunks_free(chunks)
        timings.update(counts)
        return n_past, n_prompt + n_image, n_image

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
            if rc != 0:
                raise BackendError(f"llama.cpp decode failed (code {rc})")
            n_past += len(part)
        return n_past

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buf = ctypes.create_string_buffer(256)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 256, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
            piece = self._pieces[token] = buf.raw[:n]
        return piece

    def _special_piece(self, token: int) -> bytes:
        """A token's text with control tokens spelled out (`<global-img>`), as the chat template writes them."""
        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 256, 0, True)
        return buf.raw[: max(0, n)]

    def _logits(self) -> np.ndarray:
        """The last position's logits, as a view on llama.cpp's buffer (no copy)."""
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx, -1), shape=(self.n_vocab,))

    def _token_vocab(self) -> TokenVocab:
        """What the shared decode loop needs of this tokenizer (end tokens scanned once)."""
        if self._tv is None:
            self._tv = TokenVocab(self.n_vocab, self._piece, frozenset(self._eos_tokens()))
        return self._tv

    def _decode(
        self, request: GenerationRequest, n_past: int, timings: dict[str, float], cancel: threading.Event | None
    ) -> Generation:
        """The shared constrained loop (engine.backends.decode) over llama.cpp's logits."""
        past = n_past

        def feed(tokens: list[int]) -> np.ndarray:
            nonlocal past
            past = self._eval_tokens(tokens, past)
            return self._logits()

        return decode(request, self._token_vocab(), self._logits(), feed, n_past=n_past, n_ctx=self._llm.n_ctx(),
                      timings=timings, cancel=cancel)

    def close(self) -> None:
        """Free the projector and the model."""
        if getattr(self, "_mtmd", None) is not None:
            mtmd.mtmd_free(self._mtmd)
            self._mtmd = None
        if getattr(self, "_llm", None) is not None:
            self._batch.close()
            self._llm.close()
            self._llm = None  # type: ignore[assignment]
