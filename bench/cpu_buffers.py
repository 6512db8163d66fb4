"""What keeping llama.cpp off its extra buffer types costs: the same model loaded both ways, analyses alternating.

    python -m bench.cpu_buffers [--model smolvlm-256m --model gemma3-4b] [--runs 3] [--threads N] [--json OUT]

On a CPU with AMX, Loupe loads weights with no extra buffer types (loupe.backends.llama_cpu), because llama.cpp's AMX
buffer crashes. That also gives up the CPU_REPACK layouts, which are the other option's whole gain: a llama.cpp built
without its AMX path keeps them. This benchmark measures both choices on the machine it runs on, side by side in one
process (`repack` = extra buffer types allowed as offered here, `plain` = none), each analysis cold (prompt KV and
image embeddings dropped), in the order plain, repack, repack, plain, ... after one untimed warm-up each:
- encode ms (the projector never uses extra buffers: a control that should stay ~1.0)
- prefill ms per prompt token, decode ms per generated token, load ms
Ratios are plain / repack (> 1: the plain buffer is slower). Models are synthetic random-weight GGUFs with the real
dimensions and the catalog's file types (bench._models): SmolVLM-256M Q8_0, Gemma 3 4B Q4_K_M.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from loupe.api import AnalyzeRequest, Engine
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.backends.llama_cpu import CpuPlan, plan
from loupe.core.hardware import default_threads
from loupe.core.types import Result, Status

from bench._models import DEFAULT_DIR, choices, synthetic
from bench.sides import bench_task

SAMPLE = Path(__file__).resolve().parent.parent / "engine" / "samples" / "scratched-panel.jpg"


def _row(result: Result) -> dict[str, float]:
    t, n = result.timings, result.tokens
    return {
        "encode_ms": t.encode_ms,
        "prefill_ms_per_token": t.prefill_ms / max(1, n.prompt),
        "decode_ms_per_token": t.decode_ms / max(1, n.completion),
        "prompt_tokens": n.prompt,
        "completion_tokens": n.completion,
    }


def measure(name: str, model_dir: Path, runs: int, threads: int, max_tokens: int) -> dict[str, Any]:
    model = synthetic(name, model_dir)
    here = plan({})
    choices_ = {
        "repack": CpuPlan(True, "bench", "on", here.buffer_types, here.features, here.cpu_flags),
        "plain": CpuPlan(False, "bench", "off", here.buffer_types, here.features, here.cpu_flags),
    }
    task = bench_task("defects", max_tokens=max_tokens, detail="low")
    backends = {
        k: LlamaCppBackend(
            model.text_path, model.mmproj_path, n_threads=threads, adapt_threads=False, cpu=cpu, projectors=None
        )
        for k, cpu in choices_.items()
    }
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in backends}
    try:
        order = ["plain", "repack"]
        for i in range(runs + 1):
            for k in order if i % 2 == 0 else order[::-1]:
                backends[k].forget()
                result = Engine(backends[k]).analyze(AnalyzeRequest((SAMPLE,), task))
                if result.status is Status.ERROR:
                    raise SystemExit(f"{name} {k}: {result.error}")
                if i > 0:  # the first pair warms both up
                    rows[k].append(_row(result))
                print(f"  {name} {k:6s} run {i}: {json.dumps(_row(result))}", flush=True)
        load = {k: b.load_ms for k, b in backends.items()}
    finally:
        for b in backends.values():
            b.close()
    med = {k: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for k, rs in rows.items()}
    ratio = {
        m: med["plain"][m] / med["repack"][m] for m in ("encode_ms", "prefill_ms_per_token", "decode_ms_per_token")
    }
    return {
        "model": name,
        "text": model.text_path.name,
        "buffers_offered": list(here.buffer_types or ()),
        "threads": threads,
        "runs": runs,
        "median": med,
        "plain_vs_repack": ratio,
        "load_ms": load,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", choices=choices(), help="default: smolvlm-256m and gemma3-4b")
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per choice")
    ap.add_argument("--threads", type=int, default=None, help="default: one per physical core")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    threads = args.threads or default_threads()
    here = plan({})
    report: dict[str, Any] = {"cpu": here.as_dict(), "models": []}
    for name in args.model or ["smolvlm-256m", "gemma3-4b"]:
        r = measure(name, args.model_dir, args.runs, threads, args.max_tokens)
        report["models"].append(r)
        q = r["plain_vs_repack"]
        print(
            f"{name} ({r['text']}): plain/repack encode {q['encode_ms']:.2f}, prefill/token "
            f"{q['prefill_ms_per_token']:.2f}, decode/token {q['decode_ms_per_token']:.2f}; load ms "
            f"{r['load_ms']['plain']:.0f} plain vs {r['load_ms']['repack']:.0f} repack",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
