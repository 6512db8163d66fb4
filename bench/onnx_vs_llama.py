"""ONNX Runtime (CPU) vs llama.cpp through Loupe's whole pipeline, on random-weight SmolVLM-256M dimensions.

    python -m bench.onnx_vs_llama [--runs 3] [--threads 2] [--max-tokens 32] [--detail low] [--quant fp32|q8]
                                  [--json OUT]

Both sides are Engine.analyze on the same image, task (describe, refusal off so random weights answer) and
max_tokens, with the same constraint layer and decode loop rules; only the model runtime differs:
  llama.cpp  loupe.models.synthetic "smolvlm-256m" GGUF: text and projector f32 (--quant fp32), or text Q8_0 and
             projector f16 (--quant q8)
  ONNX       loupe.models.hf_synthetic.build_smolvlm(SMOLVLM_256M) exported by loupe.models.hf_onnx (three pieces,
             past KV), fp32, or int8 weights by onnxruntime's quantize_dynamic (the "_quantized" files, --quant q8),
             onnxruntime CPUExecutionProvider
The two are built from different random weights and tokenizers (the GGUF has SmolVLM's 49,280-token vocabulary
layout, the HF model the tiny BPE with a 49,280-row embedding), so prompt/image token counts are printed and
ms per generated token is the comparable figure. Building the ONNX side needs torch (`.[build-hf]`) once; both
are cached under $LOUPE_BENCH_MODELS (default: the user cache). Runs alternate A, B after one warm-up pair.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path
from typing import Any

from loupe.api import AnalyzeRequest, Engine
from loupe.core.tasks import builtin_task

from bench._models import DEFAULT_DIR, synthetic

SAMPLE = Path(__file__).resolve().parent.parent / "engine" / "samples" / "scratched-panel.jpg"
STAGES = ("preprocess_ms", "encode_ms", "prefill_ms", "decode_ms", "total_ms")


def onnx_model_dir(root: Path) -> Path:
    """The fp32 HF + ONNX SmolVLM-256M-dims model, built (needs torch) unless already there."""
    out = root / "hf-smolvlm-256m"
    if not (out / "hf" / "onnx" / "decoder_model_merged.onnx").is_file():
        from loupe.models.hf_onnx import export_smolvlm
        from loupe.models.hf_synthetic import SMOLVLM_256M, build_smolvlm

        model, processor = build_smolvlm(out, SMOLVLM_256M)
        export_smolvlm(model, processor, out / "hf" / "onnx")
    return out / "hf"


def quantized_q8(model_dir: Path) -> None:
    """The `*_quantized.onnx` pieces (int8 weights, dynamic activations), made once from the fp32 ones."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for piece in ("vision_encoder", "embed_tokens", "decoder_model_merged"):
        target = model_dir / "onnx" / f"{piece}_quantized.onnx"
        if not target.is_file():
            quantize_dynamic(model_dir / "onnx" / f"{piece}.onnx", target, weight_type=QuantType.QInt8)


def _row(result: Any) -> dict[str, Any]:
    t = result.timings
    row = {k: getattr(t, k) for k in STAGES}
    row.update(
        status=result.status.value,
        prompt=result.tokens.prompt,
        image=result.tokens.image,
        completion=result.tokens.completion,
    )
    row["ms_per_token"] = t.decode_ms / max(1, result.tokens.completion)
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument(
        "--detail",
        default="low",
        help="image detail (low, high or a longest edge in pixels); low "
        "caps image tokens at 128: llama.cpp fits its tiles to it, SmolVLM on ONNX takes one 64-token "
        "view (high tiles up to 2048 px: 13 tiles, ~9 GB of RAM for ONNX)",
    )
    ap.add_argument("--quant", choices=["fp32", "q8"], default="fp32")
    ap.add_argument("--json", help="write the rows and medians here")
    args = ap.parse_args(argv)

    from loupe.backends.llama_cpp import LlamaCppBackend
    from loupe.backends.onnx import OnnxBackend

    types = {"fp32": ("f32", "f32"), "q8": ("q8_0", "f16")}[args.quant]
    gguf = synthetic("smolvlm-256m", DEFAULT_DIR, text_type=types[0], mmproj_type=types[1])
    onnx_dir = onnx_model_dir(DEFAULT_DIR)
    if args.quant == "q8":
        quantized_q8(onnx_dir)
    detail = int(args.detail) if args.detail.isdigit() else args.detail
    task = builtin_task("describe").with_options(
        max_tokens=args.max_tokens, allow_refusal=False, detail=detail, retries=0
    )
    sides = {
        "llama.cpp": Engine(LlamaCppBackend(gguf.text_path, gguf.mmproj_path, n_threads=args.threads)),
        "onnx-cpu": Engine(OnnxBackend(onnx_dir, ep="cpu", quant=args.quant, n_threads=args.threads)),
    }
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    request = AnalyzeRequest((SAMPLE,), task)
    for run in range(args.runs + 1):
        for name, engine in sides.items():
            row = _row(engine.analyze(request))
            if run:  # the first pair is the warm-up
                rows[name].append(row)
    medians = {
        name: {k: statistics.median(r[k] for r in rs) for k in (*STAGES, "ms_per_token")} for name, rs in rows.items()
    }
    cpu = platform.processor() or platform.machine()
    print(
        f"SmolVLM-256M dims ({args.quant}), random weights, {args.threads} threads, {cpu}, "
        f"median of {args.runs} (after 1 warm-up)"
    )
    print(f"{'':10}" + "".join(f"{k.removesuffix('_ms'):>13}" for k in (*STAGES, "ms_per_token")) + "   tokens p/i/c")
    for name, med in medians.items():
        last = rows[name][-1]
        print(
            f"{name:10}"
            + "".join(f"{med[k]:13.1f}" for k in (*STAGES, "ms_per_token"))
            + f"   {last['prompt']}/{last['image']}/{last['completion']} ({last['status']})"
        )
    for engine in sides.values():
        engine.close()
    report = {"rows": rows, "medians": medians, "args": vars(args)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
