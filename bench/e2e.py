"""Loupe's full pipeline vs raw llama-cpp-python on the same model, image, prompt and schema (one run, A/B).

    python -m bench.e2e [--model tiny-smolvlm|smolvlm-256m|smolvlm-500m|gemma3-4b] [--task describe]
                        [--runs N] [--warmup 1] [--threads 2] [--max-tokens 64] [--detail low] [--json OUT]

A = Engine.analyze (LlamaCppBackend: mtmd image encode from pixels, LLGuidance mask per step, fast-forward,
    per-field confidence, validation), retries off, max_tokens overridden so random weights stop.
B = llama_cpp.Llama + MTMDChatHandler.create_chat_completion with response_format json_object + the task's
    schema (llama.cpp's GBNF grammar, applied by llama-cpp-python's sampler), temperature 0, same max_tokens.
    The image is the same upright, downscaled picture Loupe sent, as a PNG data URL: B decodes the PNG again
    inside the call (Loupe hands raw pixels to mtmd).
Image tokens: Loupe's `detail: low` caps mtmd at DETAIL_IMAGE_TOKENS["low"] image tokens. MTMDChatHandler
    has no option for that cap, so B gets an mtmd context made the way the handler makes it plus the same
    `image_max_tokens` (installed as handler.mtmd_ctx before the first call; the handler then reuses it).
    With --detail high (or pixels) neither side is capped. Prompt/image token counts of both sides are printed.
Runs alternate A, B, A, B, ... after --warmup untimed pairs; the table shows medians and B/A ratios
    (> 1 means Loupe is faster).
B's split: the handler calls llama.create_completion after the image and prompt are evaluated; a timestamp at
    that call splits B into "before generation" (PNG decode + encode + prefill + GBNF compile) and
    "generation" (re-eval of the last prompt token + sampling under the grammar + decode).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.llama_chat_format as chat_format
import llama_cpp.mtmd_cpp as mtmd
from llama_cpp._utils import suppress_stdout_stderr

from bench._models import DEFAULT_DIR, choices, synthetic
from engine.api import AnalyzeRequest, Engine
from engine.backends.llama_cpp import LlamaCppBackend
from engine.images.load import load_image
from engine.images.resize import image_tokens_for
from engine.pipeline import prepare
from engine.prompt import MEDIA, user_text
from engine.tasks import Task, builtin_task

SAMPLE = Path(__file__).resolve().parent.parent / "engine" / "samples" / "scratched-panel.jpg"
A_STAGES = ("preprocess_ms", "encode_ms", "prefill_ms", "decode_ms", "constraint_ms", "total_ms")


def _perf(ctx: Any) -> dict[str, float]:
    p = llama_cpp.llama_perf_context(ctx)
    return {"t_p_eval_ms": p.t_p_eval_ms, "n_p_eval": p.n_p_eval, "t_eval_ms": p.t_eval_ms, "n_eval": p.n_eval}


# -- A: Loupe ---------------------------------------------------------------------------------------
class LoupeSide:
    def __init__(self, text: Path, mmproj: Path, threads: int, task: Task, image: Path) -> None:
        self.backend = LlamaCppBackend(text, mmproj, n_ctx=8192, n_threads=threads)
        self.engine = Engine(self.backend)
        self.request = AnalyzeRequest((str(image),), task)

    def run(self) -> dict[str, Any]:
        llama_cpp.llama_perf_context_reset(self.backend._ctx)
        t0 = time.perf_counter()
        res = self.engine.analyze(self.request)
        wall = (time.perf_counter() - t0) * 1000
        t = res.timings
        n = res.tokens.completion
        row = {stage: getattr(t, stage) for stage in A_STAGES}
        row.update(
            wall_ms=wall,
            completion_tokens=n,
            prompt_tokens=res.tokens.prompt,
            image_tokens=res.tokens.image,
            decode_ms_per_token=t.decode_ms / n if n else None,
            other_ms=t.total_ms - t.preprocess_ms - t.encode_ms - t.prefill_ms - t.decode_ms,
            status=res.status.value,
            llama_perf=_perf(self.backend._ctx),
        )
        return row

    def close(self) -> None:
        self.engine.close()


# -- B: raw llama-cpp-python ------------------------------------------------------------------------
class RawSide:
    def __init__(
        self, text: Path, mmproj: Path, threads: int, task: Task, url: str, parts: tuple[str, str],
        image_max_tokens: int | None,
    ) -> None:
        self.handler = chat_format.MTMDChatHandler(clip_model_path=str(mmproj), verbose=False)
        self.llm = llama_cpp.Llama(
            model_path=str(text), n_ctx=8192, n_threads=threads, n_threads_batch=threads, verbose=False,
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


# -- the run -------------------------------------------------------------------------------------------
def _png_data_url(img: Any) -> str:
    buf = io.BytesIO()
    (img if img.mode == "RGB" else img.convert("RGB")).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def _fmt(v: float | None, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-smolvlm", choices=choices())
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--text-type", default=None, help="default q8_0 (f32 for tiny-*)")
    ap.add_argument("--mmproj-type", default=None, help="default f16 (f32 for tiny-*)")
    ap.add_argument("--task", default="describe")
    ap.add_argument("--image", type=Path, default=SAMPLE)
    ap.add_argument("--runs", type=int, default=5, help="timed A/B pairs")
    ap.add_argument("--warmup", type=int, default=1, help="untimed A/B pairs first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--detail", default="low", help='Loupe detail: "low" (capped image tokens, B gets the same '
                    'cap), "high", or a longest edge in pixels (no cap on either side)')
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args(argv)

    detail: str | int = int(args.detail) if args.detail.isdigit() else args.detail
    model = synthetic(args.model, args.model_dir, text_type=args.text_type, mmproj_type=args.mmproj_type)
    task = builtin_task(args.task).with_options(max_tokens=args.max_tokens, retries=0, temperature=0.0,
                                                detail=detail)
    cap = image_tokens_for(detail)

    # the exact picture and text Loupe sends
    loaded = load_image(str(args.image))
    prepared, infos = prepare([loaded], detail)
    small = prepared[0].image
    text = user_text(task.instructions, task.schema, 1, allow_refusal=task.options.allow_refusal)
    before, _, after = text.partition(MEDIA)
    url = _png_data_url(small)

    t = time.perf_counter()
    a = LoupeSide(model.text_path, model.mmproj_path, args.threads, task, args.image)
    load_a = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    b = RawSide(model.text_path, model.mmproj_path, args.threads, task, url, (before, after), cap)
    load_b = (time.perf_counter() - t) * 1000

    rows_a: list[dict[str, Any]] = []
    rows_b: list[dict[str, Any]] = []
    try:
        for i in range(args.warmup + args.runs):
            ra = a.run()
            rb = b.run(args.max_tokens)
            tag = "warmup" if i < args.warmup else f"run {i - args.warmup + 1}"
            print(f"  {tag}: A {ra['total_ms']:.0f} ms ({ra['completion_tokens']} tok, {ra['status']}), "
                  f"B {rb['total_ms']:.0f} ms ({rb['completion_tokens']} tok, {rb['finish_reason']})", flush=True)
            if i >= args.warmup:
                rows_a.append(ra)
                rows_b.append(rb)
    finally:
        a.close()
        b.close()

    med_a = {k: _median(rows_a, k) for k in (*A_STAGES, "other_ms", "wall_ms", "decode_ms_per_token",
                                             "completion_tokens")}
    med_b = {k: _median(rows_b, k) for k in ("total_ms", "before_generation_ms", "generation_ms",
                                             "decode_ms_per_token", "completion_tokens")}
    ratio_total = med_b["total_ms"] / med_a["total_ms"] if med_a["total_ms"] else None
    ratio_tok = (med_b["decode_ms_per_token"] / med_a["decode_ms_per_token"]
                 if med_a["decode_ms_per_token"] and med_b["decode_ms_per_token"] else None)
    a_before = (med_a["preprocess_ms"] or 0) + (med_a["encode_ms"] or 0) + (med_a["prefill_ms"] or 0)
    loupe_vs_llamacpp = med_a["total_ms"] / med_b["total_ms"] if med_b["total_ms"] else None

    img_a = rows_a[0]["image_tokens"] if rows_a else None
    print()
    print(f"bench.e2e  model={args.model} ({model.text_path.name} + {model.mmproj_path.name})  task={args.task}  "
          f"threads={args.threads}  max_tokens={args.max_tokens}  runs={args.runs} (+{args.warmup} warmup, ABAB)")
    print(f"image {args.image.name}: {infos[0].width}x{infos[0].height} -> "
          f"{small.width}x{small.height} sent to both sides (B: as PNG data URL, {len(url) // 1024} KiB)")
    cap_note = (f"capped at {cap} image tokens on both sides (B: handler's mtmd context + image_max_tokens)"
                if cap else "uncapped on both sides (the projector's own tiling)")
    print(f"detail={detail}: {cap_note}")
    print(f"tokens (run 1): A prompt={rows_a[0]['prompt_tokens'] if rows_a else '-'} (image {img_a})  "
          f"B prompt={rows_b[0]['prompt_tokens'] if rows_b else '-'}")
    print(f"load: A {load_a:.0f} ms, B {load_b:.0f} ms (not in the table)")
    print()
    print("A = Loupe Engine.analyze, per-stage medians (ms)")
    print("  " + "  ".join(f"{s.removesuffix('_ms'):>10}" for s in A_STAGES)
          + f"  {'other':>8}  {'tokens':>7}  {'ms/token':>9}")
    print("  " + "  ".join(f"{_fmt(med_a[s]):>10}" for s in A_STAGES) + f"  {_fmt(med_a['other_ms']):>8}"
          + f"  {_fmt(med_a['completion_tokens'], 0):>7}  {_fmt(med_a['decode_ms_per_token'], 2):>9}")
    print("  (constraint is inside decode; other = total - preprocess - encode - prefill - decode: downscale,\n"
          "   prompt, parse, validation, confidence; the JPEG file decode is outside total, see wall_ms in --json)")
    print()
    print(f"{'whole call, medians':<38}{'A Loupe':>12}{'B llama-cpp-py':>16}{'B/A':>8}")
    lines = [
        ("total ms", med_a["total_ms"], med_b["total_ms"], 1),
        ("before generation ms (enc+prefill)", a_before, med_b["before_generation_ms"], 1),
        ("decode / generation ms", med_a["decode_ms"], med_b["generation_ms"], 1),
        ("completion tokens", med_a["completion_tokens"], med_b["completion_tokens"], 0),
        ("decode ms/token", med_a["decode_ms_per_token"], med_b["decode_ms_per_token"], 2),
    ]
    for label, va, vb, nd in lines:
        r = vb / va if va and vb else None
        print(f"{label:<38}{_fmt(va, nd):>12}{_fmt(vb, nd):>16}{_fmt(r, 2):>8}")
    print()
    print(f"ratio B/A: total {_fmt(ratio_total, 2)}, decode per token {_fmt(ratio_tok, 2)} (> 1: Loupe faster); "
          f"loupe_vs_llamacpp (A/B total) {_fmt(loupe_vs_llamacpp, 3)}")
    print("notes: B constrains with llama.cpp's GBNF grammar (from the JSON schema via llama-cpp-python); A with "
          "LLGuidance.\n       B re-decodes the image from PNG inside the call; A hands mtmd raw pixels. "
          "A's total includes\n       parsing, validation and per-field confidence; B's includes none of that.")

    report = {
        "model": args.model,
        "text_path": str(model.text_path),
        "mmproj_path": str(model.mmproj_path),
        "task": args.task,
        "image": str(args.image),
        "image_sent": [small.width, small.height],
        "detail": detail,
        "image_max_tokens": cap,
        "threads": args.threads,
        "max_tokens": args.max_tokens,
        "runs": args.runs,
        "warmup": args.warmup,
        "order": "ABAB",
        "load_ms": {"A": load_a, "B": load_b},
        "median": {"A": med_a, "B": med_b},
        "ratio_B_over_A": {"total": ratio_total, "decode_ms_per_token": ratio_tok},
        "loupe_vs_llamacpp": loupe_vs_llamacpp,
        "raw": {"A": rows_a, "B": rows_b},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg(),
                    "llama_cpp_python": llama_cpp.__version__},
        "notes": [
            "B uses llama.cpp's GBNF grammar (llama-cpp-python response_format json_object + schema)",
            "B re-decodes the image from a PNG data URL inside the call; Loupe hands mtmd raw pixels",
            "B's generation_ms starts at llama.create_completion (after image + prompt evaluation)",
        ],
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
