"""The sides bench.e2e compares on the same model, image, prompt and schema: A = Loupe, B = raw llama-cpp-python.

A = Engine.analyze (LlamaCppBackend: mtmd image encode from pixels (with the BF16 projector copy a user's Loupe makes
    on a CPU with a BF16 dot product; B loads the published file), LLGuidance mask per step, fast-forward,
    per-field confidence, validation), retries off. A runs cold each time (its prompt-prefix KV cache and image
    embeddings are dropped first) unless asked warm, so A and B do the same work.
B = llama_cpp.Llama + MTMDChatHandler.create_chat_completion with response_format json_object + the schema
    (llama.cpp's GBNF grammar, applied by llama-cpp-python's sampler), temperature 0, same max_tokens. The image
    is the same upright, downscaled picture Loupe sent, as a PNG data URL (B decodes it again inside the call).
    MTMDChatHandler has no option for the image-token cap, so B gets an mtmd context made the way the handler
    makes it plus the same `image_max_tokens`.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.llama_chat_format as chat_format
import llama_cpp.mtmd_cpp as mtmd
from llama_cpp._utils import suppress_stdout_stderr
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.base import Generation, GenerationRequest
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.backends.llama_cpu import load_llama
from loupe.backends.projector_bf16 import ProjectorCache
from loupe.core.confidence import field_confidence
from loupe.core.schema.spans import leaf_spans
from loupe.core.tasks import Task, builtin_task

A_STAGES = ("preprocess_ms", "encode_ms", "prefill_ms", "decode_ms", "constraint_ms", "total_ms")


def bench_task(name: str, *, max_tokens: int, detail: str | int) -> Task:
    """A built-in task for benchmarking: retries off, greedy. `defects` gets a fixed-size list (exactly 2 items,
    reasons of 16-24 characters): random weights then finish the JSON, so parse/validate/confidence run, and the
    answer has the length of a real two-defect answer whatever the random weights prefer (an empty list is 7
    tokens with a realistic vocabulary)."""
    task = builtin_task(name).with_options(max_tokens=max_tokens, retries=0, temperature=0.0, detail=detail)
    if name != "defects":
        return task
    schema = dict(task.schema)
    defects = dict(schema["properties"]["defects"], minItems=2, maxItems=2)
    item = dict(defects["items"])
    item["properties"] = dict(item["properties"], reason={"type": "string", "minLength": 16, "maxLength": 24})
    defects["items"] = item
    schema["properties"] = {"defects": defects}
    return Task(name="defects-bounded", schema=schema, instructions=task.instructions, options=task.options)


class Recorder:
    """Wraps the real backend and keeps its last Generation (the model still runs for real)."""

    def __init__(self, inner: LlamaCppBackend) -> None:
        self.inner = inner
        self.name, self.steerable = inner.name, inner.steerable
        self.model_id, self.capabilities, self.load_ms = inner.model_id, inner.capabilities, inner.load_ms
        self.last: Generation | None = None

    def compile(self, schema: Any, *, allow_refusal: bool = True) -> Any:
        return self.inner.compile(schema, allow_refusal=allow_refusal)

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        self.last = self.inner.generate(request, cancel=cancel)
        return self.last

    def close(self) -> None:
        self.inner.close()


def confidence_ms(gen: Generation) -> float | None:
    """Time of Loupe's per-field confidence on this output (None when it is not JSON)."""
    raw = gen.text.encode()
    t = time.perf_counter()
    try:
        field_confidence(gen.steps, leaf_spans(raw.strip(), offset=len(raw) - len(raw.lstrip())))
    except ValueError:
        return None
    return (time.perf_counter() - t) * 1000


def _perf(ctx: Any) -> dict[str, float]:
    p = llama_cpp.llama_perf_context(ctx)
    return {"t_p_eval_ms": p.t_p_eval_ms, "n_p_eval": p.n_p_eval, "t_eval_ms": p.t_eval_ms, "n_eval": p.n_eval}


# -- A: Loupe ---------------------------------------------------------------------------------------
class LoupeSide:
    def __init__(
        self,
        text: Path,
        mmproj: Path,
        threads: int,
        task: Task,
        image: Path,
        *,
        projectors: bool = True,
        adapt_threads: bool = True,
    ) -> None:
        """`projectors`: as a user's Loupe does, load the BF16 copy of the projector on a CPU with a BF16 dot product
        (loupe.backends.projector_bf16, in the user cache); False loads the file as it is.
        `adapt_threads`: as a user's Loupe does when no thread count is given, let decoding try fewer threads and
        keep the faster (loupe.backends.thread_tuner); False keeps `threads`."""
        cache = ProjectorCache.default() if projectors else None
        self.backend = LlamaCppBackend(
            text, mmproj, n_ctx=8192, n_threads=threads, projectors=cache, adapt_threads=adapt_threads
        )
        self.recorder = Recorder(self.backend)
        self.engine = Engine(self.recorder)
        self.task = task
        self.image = image

    def run(self, image: Path | None = None, *, task: Task | None = None, warm: bool = False) -> dict[str, Any]:
        """One analysis; cold (nothing reused from earlier runs) unless `warm`."""
        if not warm:
            self.backend.forget()
        llama_cpp.llama_perf_context_reset(self.backend.model.ctx)
        t0 = time.perf_counter()
        res = self.engine.analyze(AnalyzeRequest((str(image or self.image),), task or self.task))
        wall = (time.perf_counter() - t0) * 1000
        t = res.timings
        n = res.tokens.completion
        gen = self.recorder.last
        row = {stage: getattr(t, stage) for stage in A_STAGES}
        row.update(
            wall_ms=wall,
            completion_tokens=n,
            prompt_tokens=res.tokens.prompt,
            image_tokens=res.tokens.image,
            decode_ms_per_token=t.decode_ms / n if n else None,
            other_ms=t.total_ms - t.preprocess_ms - t.encode_ms - t.prefill_ms - t.decode_ms,
            status=res.status.value,
            decode_threads=gen.timings.get("decode_threads") if gen is not None else None,
            confidence_ms=confidence_ms(gen) if gen is not None and res.status.value in ("ok", "invalid") else None,
            reuse={
                k: gen.timings.get(k)
                for k in ("prefill_tokens", "reused_tokens", "image_chunks_encoded", "image_chunks_cached")
            }
            if gen is not None
            else {},
            llama_perf=_perf(self.backend.model.ctx),
        )
        return row

    def forward_ms_per_token(self, n: int = 16) -> float:
        """Median time of one single-token forward pass (no constraint, no sampling): the model's own decode cost."""
        self.backend.forget()
        times = []
        for i in range(n):
            t = time.perf_counter()
            self.backend.model.eval_tokens([1 + i], i)
            times.append((time.perf_counter() - t) * 1000)
        self.backend.forget()
        return sorted(times)[len(times) // 2]

    def close(self) -> None:
        self.engine.close()


# -- B: raw llama-cpp-python ------------------------------------------------------------------------
class RawSide:
    def __init__(
        self,
        text: Path,
        mmproj: Path,
        threads: int,
        task: Task,
        url: str,
        parts: tuple[str, str],
        image_max_tokens: int | None,
    ) -> None:
        self.handler = chat_format.MTMDChatHandler(clip_model_path=str(mmproj), verbose=False)
        # the same weight-buffer choice as Loupe's side (loupe.backends.llama_cpu: never the AMX buffer that crashes)
        self.llm = load_llama(
            model_path=str(text),
            n_ctx=8192,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
            chat_handler=self.handler,
        )
        if image_max_tokens:
            self._install_capped_mtmd(image_max_tokens)
        self.task = task
        before, after = parts
        content: list[dict[str, Any]] = []
        if before:
            content.append({"type": "text", "text": before})
        content.append({"type": "image_url", "image_url": {"url": url}})
        if after:
            content.append({"type": "text", "text": after})
        self.messages = [{"role": "user", "content": content}]
        # timestamp where the handler hands over to generation (image + prompt already evaluated)
        self._gen_start = 0.0
        inner = self.llm.create_completion

        def timed_completion(*args: Any, **kwargs: Any) -> Any:
            self._gen_start = time.perf_counter()
            return inner(*args, **kwargs)

        self.llm.create_completion = timed_completion  # type: ignore[method-assign]

    def _install_capped_mtmd(self, cap: int) -> None:
        """The handler's own mtmd context (same params as MTMDChatHandler._init_mtmd_context) plus the cap."""
        h, llm = self.handler, self.llm
        with suppress_stdout_stderr(disable=False):
            params = mtmd.mtmd_context_params_default()
            params.use_gpu = h.use_gpu
            params.print_timings = False
            params.n_threads = llm.n_threads
            params.flash_attn_type = (
                llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
                if llm.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
                else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
            )
            params.image_max_tokens = cap
            ctx = mtmd.mtmd_init_from_file(h.clip_model_path.encode(), llm.model, params)
        if ctx is None:
            raise SystemExit(f"mtmd could not load {h.clip_model_path}")
        h.mtmd_ctx = ctx

        def free() -> None:
            if h.mtmd_ctx is not None:
                mtmd.mtmd_free(h.mtmd_ctx)
                h.mtmd_ctx = None

        llm._stack.callback(free)

    def run(self, max_tokens: int) -> dict[str, Any]:
        llama_cpp.llama_perf_context_reset(self.llm._ctx.ctx)
        t0 = time.perf_counter()
        out = self.llm.create_chat_completion(
            messages=self.messages,  # type: ignore[arg-type]
            response_format={"type": "json_object", "schema": self.task.schema},  # type: ignore[typeddict-item]
            temperature=0,
            max_tokens=max_tokens,
        )
        t1 = time.perf_counter()
        usage = out["usage"]  # type: ignore[index]
        n = usage["completion_tokens"]
        gen_ms = (t1 - self._gen_start) * 1000 if self._gen_start >= t0 else float("nan")
        return {
            "total_ms": (t1 - t0) * 1000,
            "before_generation_ms": (self._gen_start - t0) * 1000 if self._gen_start >= t0 else float("nan"),
            "generation_ms": gen_ms,
            "completion_tokens": n,
            "prompt_tokens": usage["prompt_tokens"],
            "decode_ms_per_token": gen_ms / n if n else None,
            "finish_reason": out["choices"][0]["finish_reason"],  # type: ignore[index]
            "llama_perf": _perf(self.llm._ctx.ctx),
        }

    def close(self) -> None:
        self.llm.close()


def png_data_url(img: Any) -> str:
    """The picture as B receives it."""
    buf = io.BytesIO()
    (img if img.mode == "RGB" else img.convert("RGB")).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
