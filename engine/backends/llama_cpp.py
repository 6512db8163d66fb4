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

import importlib.util
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import numpy as np
from loupe.backends.base import Capabilities, Generation, GenerationRequest
from loupe.backends.chat_template import load_chat_template, render_prompt, template_source
from loupe.backends.decode import decode
from loupe.backends.gguf_file import check_gguf
from loupe.backends.llama_cpu import CpuPlan
from loupe.backends.llama_cpu import plan as cpu_plan
from loupe.backends.llama_model import LlamaModel, PrefillCancelled
from loupe.backends.llama_mtmd import MtmdEncoder
from loupe.backends.llama_prefill import Prefiller, SavedPrefixes
from loupe.backends.prefix_store import PrefixStore
from loupe.backends.projector_bf16 import ProjectorCache
from loupe.backends.reuse import DEFAULT_EMBED_CACHE_BYTES, EmbeddingCache
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


class LlamaCppBackend:
    """A loaded llama.cpp model with its multimodal projector, made of parts that each own their state: `model` (the
    text model and its context, loupe.backends.llama_model), `encoder` (the projector, loupe.backends.llama_mtmd),
    `prefiller` (prompt evaluation and what is reused, loupe.backends.llama_prefill) and the decode thread tuner."""

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
        self.model = LlamaModel(
            self.text_path,
            cpu=self.cpu,
            n_ctx=n_ctx,
            n_ctx_start=n_ctx_start,
            threads=threads,
            n_batch=n_batch,
            n_ubatch=n_ubatch,
            use_mmap=use_mmap,
            verbose=verbose,
        )
        self.n_vocab = self.model.n_vocab
        adapt = n_threads is None if adapt_threads is None else adapt_threads
        self._tuner: ThreadTuner | None = ThreadTuner(threads) if adapt and threads > 1 else None
        try:
            self.encoder = MtmdEncoder(
                self.mmproj_path,
                self.model,
                threads=threads,
                image_max_tokens=image_max_tokens,
                projectors=projectors,
                verbose=verbose,
            )
        except ModelLoadError:
            self.model.close()
            raise
        source, note = template_source(self.model.chat_template, self.text_path, self.encoder.projector)
        self.notes: tuple[str, ...] = (note,) if note else ()  # what a user should know about this load
        self._template: jinja2.Template = load_chat_template(source, self.text_path)
        saved = SavedPrefixes(prefix_store, self.model) if prefix_store is not None else None
        self.prefiller = Prefiller(self.model, self.encoder, EmbeddingCache(embed_cache_bytes), saved)
        self._compiler: Any = None
        self._lock = threading.Lock()
        self.capabilities = Capabilities(max_context=self.model.max_ctx)
        self.load_ms = (time.perf_counter() - t0) * 1000

    # -- what callers and tests read ------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        """Positions the context holds now (it grows per request up to `capabilities.max_context`)."""
        return self.model.n_ctx

    @property
    def mmproj_file(self) -> Path:
        """What llama.cpp loaded for the projector: mmproj_path, or its BF16 copy (loupe.backends.projector_bf16)."""
        return self.encoder.file

    @property
    def _llm(self) -> Any:
        """The llama_cpp.Llama (None once closed)."""
        return self.model.llm

    @property
    def _mtmd(self) -> Any:
        """The mtmd context now (a new one each time the image-token cap changes)."""
        return self.encoder.ctx

    @property
    def _projector(self) -> str:
        """The projector type named in the mmproj file (`idefics3`, `gemma3`, ...)."""
        return self.encoder.projector

    @property
    def _embeds(self) -> EmbeddingCache:
        """Image embeddings kept by content."""
        return self.prefiller.embeds

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def is_available(cls) -> bool:
        """Whether llama-cpp-python is installed."""
        return importlib.util.find_spec("llama_cpp") is not None

    def compile(self, schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> Constraint:
        """Compile for this model's vocabulary (the compiler is built once, on first use)."""
        if self._compiler is None:
            engine = CONSTRAINT_ENGINES[self.constraint_engine]
            self._compiler = engine(self.model.vocab, self.n_vocab, self.model.eos_tokens())
        return self._compiler.compile(schema, allow_refusal=allow_refusal)

    # -- one generation -------------------------------------------------------------------------
    def render(self, text: str) -> str:
        """The full prompt text: the model's own chat template around one user message."""
        return render_prompt(self._template, text, MtmdEncoder.marker())

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        """Prefill prompt + images, then decode under the constraint (one request at a time)."""
        with self._lock:
            return self._generate(request, cancel)

    def _generate(self, request: GenerationRequest, cancel: threading.Event | None) -> Generation:
        if request.constraint is None:
            raise BackendError("the llama.cpp backend needs a compiled constraint")
        cap = self.encoder.request_cap(request.image_max_tokens)
        try:
            self.encoder.use_cap(cap)
        except ModelLoadError:  # the projector could not be made again: the model goes with it
            self.model.close()
            raise
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        bitmaps = [self.encoder.bitmap(img.image, img.id, cap) for img in request.images]
        timings["preprocess_ms"] = (time.perf_counter() - t0) * 1000
        steps: dict[str, list[int]] = {}
        vectors: dict[str, bytes] = {}
        keys = [MtmdEncoder.bitmap_key(bm) for bm in bitmaps]
        # the prompt's text and image embeddings run on the count decoding last found fastest (a busy machine slows
        # wide batches too); the projector's own encode keeps the threads it was made with
        self.model.set_threads(self._tuner.current if self._tuner is not None else self.model.threads)
        try:
            n_past, n_prompt, n_image = self.prefiller.prefill(
                self.render(request.text), bitmaps, timings, steps, request.max_tokens, cancel, vectors
            )
        except PrefillCancelled:
            gen = Generation(text="", steps=[], stop="cancelled")
            gen.timings = timings
            return gen
        finally:
            MtmdEncoder.free(bitmaps)
        t1 = time.perf_counter()
        gen = self._decode(request, n_past, timings, cancel)
        timings["decode_ms"] = (time.perf_counter() - t1) * 1000
        gen.prompt_tokens, gen.image_tokens, gen.timings = n_prompt, n_image, timings
        gen.image_steps = self.encoder.describe_tiling(request, keys, steps)
        gen.embeddings = {img.id: vectors[key] for img, key in zip(request.images, keys, strict=True) if key in vectors}
        return gen

    def _decode(
        self, request: GenerationRequest, n_past: int, timings: dict[str, float], cancel: threading.Event | None
    ) -> Generation:
        """The shared constrained loop (loupe.backends.decode) over llama.cpp's logits."""
        tuner = self._tuner
        first: np.ndarray = self.model.logits()
        gen = decode(
            request,
            self.model.token_vocab(),
            first,
            self.model.feed(n_past, tuner),
            n_past=n_past,
            n_ctx=self.model.n_ctx,
            timings=timings,
            cancel=cancel,
        )
        if tuner is not None:
            timings["decode_threads"] = float(tuner.current)
        return gen

    def forget(self) -> None:
        """Drop the reusable prompt prefix and the image embeddings (the next request runs cold)."""
        self.prefiller.forget()

    def close(self) -> None:
        """Free the projector and the model."""
        if getattr(self, "encoder", None) is not None:
            self.encoder.close()
        if getattr(self, "model", None) is not None:
            self.model.close()
