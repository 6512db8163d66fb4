"""llama.cpp backend: a GGUF text model + mmproj through llama-cpp-python, decoded under our own mask.

We drive llama.cpp's low-level API ourselves instead of `MTMDChatHandler` + `create_completion`:
that path applies a GBNF grammar to the whole vocabulary per token, silently falls back to generic
JSON when a schema fails to convert, and needs `logits_all=True` (~75 ms/token) for probabilities.
Here each step reads only the last logits, masks them with the compiled constraint, and keeps the
renormalised probability of the chosen token for per-field confidence.
Work is not repeated between requests: the KV cache keeps the prompt prefix a new request shares with the
last one (the task's text comes before the images, see loupe.core.prompt), and projector outputs are kept by
image content (loupe.backends.reuse), so a retry or second pass on the same image skips encoding.
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
import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
import numpy as np
from llama_cpp._internals import LlamaBatch
from llama_cpp._utils import suppress_stdout_stderr
from loupe.backends.base import Capabilities, Generation, GenerationRequest
from loupe.backends.chat_template import load_chat_template, render_prompt, template_source
from loupe.backends.decode import TokenVocab, decode
from loupe.backends.gguf_file import check_gguf, projector_type, repacked
from loupe.backends.llama_cpu import CpuPlan, load_llama
from loupe.backends.llama_cpu import plan as cpu_plan
from loupe.backends.llama_mtmd import FIXED_SIZE_PROJECTORS, MtmdMixin
from loupe.backends.llama_prefill import PrefillCancelled, PrefillMixin
from loupe.backends.prefix_store import PrefixStore
from loupe.backends.projector_bf16 import ProjectorCache
from loupe.backends.reuse import DEFAULT_EMBED_CACHE_BYTES, EmbeddingCache, Unit
from loupe.backends.thread_tuner import ThreadTuner
from loupe.core.constrain.base import Constraint
from loupe.core.constrain.llguidance import LLGuidanceCompiler
from loupe.core.errors import BackendError, ModelLoadError
from loupe.core.hardware import default_threads
from loupe.core.images.resize import DETAIL_IMAGE_TOKENS


def _llguidance(vocab: Any, n_vocab: int, eos: list[int]) -> Any:
    from llguidance.llamacpp import lltokenizer_from_vocab

    return LLGuidanceCompiler(lltokenizer_from_vocab(vocab, n_vocab=n_vocab, eos_token=eos))


def _gbnf(vocab: Any, n_vocab: int, eos: list[int]) -> Any:
    from loupe.core.constrain.gbnf import GbnfCompiler

    return GbnfCompiler(vocab, eos)


# the default is LLGuidance; llama.cpp's GBNF stays selectable for comparison (see bench.schema_coverage)
CONSTRAINT_ENGINES = {"llguidance": _llguidance, "gbnf": _gbnf}


class LlamaCppBackend(MtmdMixin, PrefillMixin):
    """A loaded llama.cpp model with its multimodal projector (its projector side in loupe.backends.llama_mtmd,
    its prompt evaluation in loupe.backends.llama_prefill)."""

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
        projectors: ProjectorCache | None = None,
        adapt_threads: bool | None = None,
        use_mmap: bool | None = None,
        cpu: CpuPlan | None = None,
        verbose: bool = False,
    ) -> None:
        """`image_max_tokens`: the image-token cap the projector is first made with; the default is the default
        detail's (`low`), so the usual first request does not reload the projector for its cap.
        `prefix_store`: where the task prompt's KV state is kept between processes (None: nowhere).
        `projectors`: where a BF16 copy of the projector is made and kept on CPUs that multiply BF16 natively
        (loupe.backends.projector_bf16; None: the mmproj file is loaded as it is).
        `adapt_threads`: let decoding try fewer/more threads and keep the faster (loupe.backends.thread_tuner);
        None: only when `n_threads` is not given (a count the user chose is kept).
        `use_mmap`: None maps the file unless llama.cpp repacks its weights on this CPU (Q4_K, Q4_0, ... on x86-64):
        mapped, those pages stay resident beside the repacked copy (llama.cpp #16761), +2 GB for Gemma 3 4B Q4_K_M.
        `cpu`: which weight buffers llama.cpp may use (loupe.backends.llama_cpu; None: decided for this machine,
        never the AMX buffer that crashes)."""
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
        self.cpu = cpu or cpu_plan()
        if use_mmap is None:
            use_mmap = not (self.cpu.extra_buffers and repacked(self.text_path, platform.machine()))
        try:
            with suppress_stdout_stderr(disable=verbose):
                self._llm = load_llama(
                    self.cpu,
                    model_path=str(self.text_path),
                    n_ctx=min(n_ctx, n_ctx_start),  # the KV cache grows to what a request needs (_fit_context)
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
                f"llama.cpp could not load the text model {self.text_path} ({exc}); the file may be "
                "truncated or corrupt: run `loupe models verify`"
            ) from None
        self._ctx = self._llm._ctx.ctx
        self._max_ctx = min(n_ctx, int(llama_cpp.llama_model_n_ctx_train(self._llm.model)) or n_ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._threads = threads
        self._threads_now = threads  # the context's thread count now (fewer only while the tuner decodes)
        self._abort_cb = None  # set only while a prompt is evaluated with a cancel event (llama_prefill._watch)
        self._cancel: threading.Event | None = None
        adapt = n_threads is None if adapt_threads is None else adapt_threads
        self._tuner = ThreadTuner(threads) if adapt and threads > 1 else None
        self._projector = projector_type(self.mmproj_path)
        if self._projector in FIXED_SIZE_PROJECTORS:
            image_max_tokens = None
        self._mtmd_cap: int | None = image_max_tokens
        self._projectors = projectors
        self.mmproj_file = projectors.path_for(self.mmproj_path) if projectors is not None else self.mmproj_path
        self._mtmd = self._init_mtmd(threads, image_max_tokens)
        source, note = template_source(self._llm.metadata.get("tokenizer.chat_template"), self.text_path,
                                       self._projector)
        self.notes: tuple[str, ...] = (note,) if note else ()  # what a user should know about this load
        self._template: jinja2.Template = load_chat_template(source, self.text_path)
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
        return render_prompt(self._template, text, mtmd.mtmd_default_marker().decode())

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        """Prefill prompt + images, then decode under the constraint (one request at a time)."""
        with self._lock:
            return self._generate(request, cancel)

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
        # the prompt's text and image embeddings run on the count decoding last found fastest (a busy machine slows
        # wide batches too); the projector's own encode keeps the threads it was made with
        self._set_threads(self._tuner.current if self._tuner is not None else self._threads)
        try:
            n_past, n_prompt, n_image = self._prefill(self.render(request.text), bitmaps, timings, steps,
                                                      request.max_tokens, cancel)
        except PrefillCancelled:
            gen = Generation(text="", steps=[], stop="cancelled")
            gen.timings = timings
            return gen
        finally:
            for bm in bitmaps:
                mtmd.mtmd_bitmap_free(bm)
        t1 = time.perf_counter()
        gen = self._decode(request, n_past, timings, cancel)
        timings["decode_ms"] = (time.perf_counter() - t1) * 1000
        gen.prompt_tokens, gen.image_tokens, gen.timings = n_prompt, n_image, timings
        gen.image_steps = self._describe_tiling(request, keys, steps)
        return gen

    def forget(self) -> None:
        """Drop the reusable prompt prefix and the image embeddings (the next request runs cold)."""
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
        self._kv = []
        self._embeds.clear()

    # -- decoding -------------------------------------------------------------------------------
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
        """The shared constrained loop (loupe.backends.decode) over llama.cpp's logits."""
        past = n_past

        tuner = self._tuner

        def feed(tokens: list[int]) -> np.ndarray:
            nonlocal past
            if tuner is None:
                past = self._eval_tokens(tokens, past)
                return self._logits()
            # the grammar's forced runs (a few tokens at once) use the same count: OpenMP threads left spinning
            # after a wider region would take the core back from the one decoding
            n = tuner.next_threads()
            self._set_threads(n)
            t = time.perf_counter()
            past = self._eval_tokens(tokens, past)
            if len(tokens) == 1:
                tuner.record(n, time.perf_counter() - t)
            return self._logits()

        gen = decode(request, self._token_vocab(), self._logits(), feed, n_past=n_past, n_ctx=self._llm.n_ctx(),
                     timings=timings, cancel=cancel)
        if tuner is not None:
            timings["decode_threads"] = float(tuner.current)
        return gen

    def _set_threads(self, n: int) -> None:
        if n != self._threads_now:
            llama_cpp.llama_set_n_threads(self._ctx, n, n)
            self._threads_now = n

    def close(self) -> None:
        """Free the projector and the model."""
        if getattr(self, "_mtmd", None) is not None:
            mtmd.mtmd_free(self._mtmd)
            self._mtmd = None
        if getattr(self, "_llm", None) is not None:
            self._batch.close()
            self._llm.close()
            self._llm = None  # type: ignore[assignment]
