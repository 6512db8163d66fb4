"""Loupe side by side with raw llama.cpp and with transformers, plus the speed mechanisms, in one run.

    python -m bench.e2e [--quick] [--json OUT] [--model smolvlm-256m] [--task defects] [--threads N]
                        [--runs N] [--warmup N] [--max-tokens N] [--detail low] [--skip transformers,coldstart,...]

Sections (each prints a line; --json writes every number, raw rows included):
  machine      read bandwidth (numpy, --threads threads) and fp32 matmul GFLOP/s (numpy BLAS), measured now
  llamacpp     A = Loupe (cold each run) vs B = raw llama-cpp-python MTMDChatHandler + GBNF (bench.sides), ABAB
               after --warmup pairs, medians: loupe_vs_llamacpp = A/B total (< 1: Loupe faster)
  share        constraint_confidence_share = (constraint + confidence) / decode time, A's medians
  roofline     single-token forward ms vs text weights bytes / read bandwidth: roofline_fraction
  matmul       encode + prefill FLOPs (bench.flops) / their time / matmul peak: encode_prefill_matmul_fraction
  reuse        image 1 cold, image 2 same task (prefix reused), image 2 again: batch_second_vs_first,
               repeat_vs_first, prefill tokens of each
  projector    image encode with the BF16 projector copy A loads (loupe.backends.projector_bf16) vs the published
               file, alternating: projector_copy_vs_file
  busy         another program keeps one core busy: A's adaptive decode threads vs A with its thread count fixed,
               alternating: busy_decode_adaptive_vs_fixed (decode ms/token)
  detail       a 1600x1200 photo at detail low vs high, cold: low_vs_high
  transformers C = transformers Idefics3, random init, same dims, same prompt/tile/new-token counts (bench.hf_side;
               needs the `bench` extra), one warm-up, then A and C alternating: loupe_vs_transformers = A/C total
  worker       the same analyses in-process vs through the model process (bench.worker_overhead), alternating:
               worker_overhead = worker / in-process (goal <= 1.02), parent and worker peak RSS
  coldstart    a fresh process: start -> first result, peak RSS / model files (bench.coldstart): peak_rss_ratio;
               then two more with a prefix store: the second loads the task prompt's KV state the first saved
  vocab        constraint ms per token with SmolVLM's 49k vs Gemma 3's 262k vocabulary (tiny dims, same task)
--quick: 2 timed pairs, 1 warm-up, at most 128 new tokens. Models are synthetic random-weight GGUFs with real dimensions
(bench._models); random weights produce meaningless text, so the task is bounded (bench.sides.bench_task).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import llama_cpp
from loupe.api.pipeline import prepare
from loupe.core.hardware import default_threads
from loupe.core.images.load import load_image
from loupe.core.images.resize import image_tokens_for
from loupe.core.prompt import MEDIA, user_text
from loupe.models.synthetic import SPECS

from bench import coldstart, hf_side, machine, scenarios, worker_overhead
from bench._models import DEFAULT_DIR, choices, default_types, synthetic, text_types
from bench.sides import A_STAGES, LoupeSide, RawSide, bench_task, png_data_url

SAMPLE = Path(__file__).resolve().parent.parent / "engine" / "samples" / "scratched-panel.jpg"
SECTIONS = (
    "llamacpp",
    "roofline",
    "matmul",
    "reuse",
    "projector",
    "busy",
    "detail",
    "transformers",
    "worker",
    "coldstart",
    "vocab",
)


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def _f(v: float | None, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def side_by_side(a: LoupeSide, b: RawSide, runs: int, warmup: int, max_tokens: int) -> dict[str, Any]:
    """ABAB after warm-up pairs; medians and ratios."""
    rows_a: list[dict[str, Any]] = []
    rows_b: list[dict[str, Any]] = []
    for i in range(warmup + runs):
        ra, rb = a.run(), b.run(max_tokens)
        tag = "warmup" if i < warmup else f"run {i - warmup + 1}"
        print(
            f"  {tag}: A {ra['total_ms']:.0f} ms ({ra['completion_tokens']} tok, {ra['status']}), "
            f"B {rb['total_ms']:.0f} ms ({rb['completion_tokens']} tok, {rb['finish_reason']})",
            flush=True,
        )
        if i >= warmup:
            rows_a.append(ra)
            rows_b.append(rb)
    med_a = {
        k: _median(rows_a, k)
        for k in (
            *A_STAGES,
            "other_ms",
            "wall_ms",
            "decode_ms_per_token",
            "completion_tokens",
            "confidence_ms",
            "prompt_tokens",
            "image_tokens",
        )
    }
    med_b = {
        k: _median(rows_b, k)
        for k in (
            "total_ms",
            "before_generation_ms",
            "generation_ms",
            "decode_ms_per_token",
            "completion_tokens",
            "prompt_tokens",
        )
    }
    share = None
    if med_a["decode_ms"]:
        share = ((med_a["constraint_ms"] or 0) + (med_a["confidence_ms"] or 0)) / med_a["decode_ms"]
    # the two constraints may pick different tokens (whitespace, LLGuidance vs GBNF), so the outputs' lengths can
    # differ: also compare A's work re-costed at B's token count (A's prompt work + A's ms/token x B's tokens)
    same = None
    if med_a["decode_ms_per_token"] and med_b["completion_tokens"] and med_b["total_ms"]:
        a_before = sum(med_a[k] or 0 for k in ("preprocess_ms", "encode_ms", "prefill_ms"))
        same = (a_before + med_a["decode_ms_per_token"] * med_b["completion_tokens"]) / med_b["total_ms"]
    return {
        "loupe_vs_llamacpp": med_a["total_ms"] / med_b["total_ms"] if med_b["total_ms"] else None,
        "loupe_vs_llamacpp_same_tokens": same,
        "decode_per_token_A_over_B": (
            med_a["decode_ms_per_token"] / med_b["decode_ms_per_token"]
            if med_a["decode_ms_per_token"] and med_b["decode_ms_per_token"]
            else None
        ),
        "constraint_confidence_share": share,
        "median": {"A": med_a, "B": med_b},
        "raw": {"A": rows_a, "B": rows_b},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        prog="python -m bench.e2e", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="fewer runs and tokens (< 10 min on a quiet 2-core box)")
    ap.add_argument("--model", default="smolvlm-256m", choices=choices())
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument(
        "--text-type",
        default=None,
        choices=text_types(),
        help="default: the catalog's (q8_0 for SmolVLM, q4_k_m for Gemma 3 4B; f32 for tiny-*)",
    )
    ap.add_argument("--mmproj-type", default=None, help="default: the catalog's (q8_0 for SmolVLM, f16 for Gemma 3)")
    ap.add_argument("--task", default="defects")
    ap.add_argument("--image", type=Path, default=SAMPLE)
    ap.add_argument("--runs", type=int, default=None, help="timed A/B pairs (default 5, --quick 2)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed A/B pairs first")
    ap.add_argument("--threads", type=int, default=None, help="default: one per physical core")
    ap.add_argument("--max-tokens", type=int, default=None, help="default 192, --quick 128")
    ap.add_argument("--detail", default="low", help="detail for the side-by-side: low, high or pixels")
    ap.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {','.join(SECTIONS)}")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    runs = args.runs or (2 if args.quick else 5)
    max_tokens = args.max_tokens or (128 if args.quick else 192)
    threads = args.threads or default_threads()
    skip = {s for s in args.skip.split(",") if s}
    detail: str | int = int(args.detail) if args.detail.isdigit() else args.detail
    t_run = time.perf_counter()
    text_type = args.text_type or default_types(args.model)[0]
    model = synthetic(args.model, args.model_dir, text_type=text_type, mmproj_type=args.mmproj_type)
    task = bench_task(args.task, max_tokens=max_tokens, detail=detail)
    report: dict[str, Any] = {
        "model": args.model,
        "text_path": str(model.text_path),
        "mmproj_path": str(model.mmproj_path),
        "task": task.name,
        "image": str(args.image),
        "detail": detail,
        "threads": threads,
        "max_tokens": max_tokens,
        "runs": runs,
        "warmup": args.warmup,
        "quick": args.quick,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg": os.getloadavg(),
            "llama_cpp_python": llama_cpp.__version__,
        },
    }
    report["machine"].update(machine.measure(threads))
    m = report["machine"]
    print(
        f"machine: read {m['read_gbs']:.1f} GB/s ({threads} threads), matmul {m['matmul_gflops']:.0f} GFLOP/s fp32, "
        f"load {m['loadavg'][0]:.2f}",
        flush=True,
    )

    prepared, _ = prepare([load_image(str(args.image))], detail)
    text = user_text(task.instructions, task.schema, 1, allow_refusal=task.options.allow_refusal)
    before, _, after = text.partition(MEDIA)
    a = LoupeSide(model.text_path, model.mmproj_path, threads, task, args.image)
    report["projector_file"] = str(a.backend.mmproj_file)
    print(
        f"projector: A loads {a.backend.mmproj_file.name}"
        f"{' (BF16 copy)' if a.backend.mmproj_file != model.mmproj_path else ''}, B {model.mmproj_path.name}",
        flush=True,
    )
    # the synthetic vocabulary has few merges, so text splits finer than a real tokenizer's (~3-4 characters per
    # token): every side prefills more tokens than with the real model; recorded so the bias is visible
    n_text = len(a.backend.model.live().tokenize(text.replace(MEDIA, "").encode(), add_bos=False, special=True))
    report["prompt_text"] = {
        "chars": len(text) - len(MEDIA),
        "tokens": n_text,
        "chars_per_token": (len(text) - len(MEDIA)) / n_text if n_text else None,
    }
    print(
        f"prompt: {report['prompt_text']['chars']} characters of task text -> {n_text} tokens "
        f"({_f(report['prompt_text']['chars_per_token'])} characters/token with the synthetic vocabulary)",
        flush=True,
    )
    work = tempfile.TemporaryDirectory(prefix="loupe-bench-")
    try:
        if "llamacpp" not in skip:
            b = RawSide(
                model.text_path,
                model.mmproj_path,
                threads,
                task,
                png_data_url(prepared[0].image),
                (before, after),
                image_tokens_for(detail),
            )
            try:
                ab = side_by_side(a, b, runs, args.warmup, max_tokens)
            finally:
                b.close()
            report["llamacpp"] = ab
            report["loupe_vs_llamacpp"] = ab["loupe_vs_llamacpp"]
            report["loupe_vs_llamacpp_same_tokens"] = ab["loupe_vs_llamacpp_same_tokens"]
            report["constraint_confidence_share"] = ab["constraint_confidence_share"]
            med = ab["median"]["A"]
            print(
                f"llamacpp: loupe_vs_llamacpp {_f(ab['loupe_vs_llamacpp'], 3)} (A {_f(med['total_ms'], 0)} ms vs B "
                f"{_f(ab['median']['B']['total_ms'], 0)} ms; at B's token count "
                f"{_f(ab['loupe_vs_llamacpp_same_tokens'], 3)}); decode/token A/B "
                f"{_f(ab['decode_per_token_A_over_B'])}; "
                f"constraint_confidence_share {_f(ab['constraint_confidence_share'], 3)}",
                flush=True,
            )
        else:
            a.run()  # warm-up: first-use costs stay out of the comparisons below, as in the A/B section
            med = a.run()
        if "matmul" not in skip:
            report["encode_prefill"] = scenarios.matmul_fraction(model, med, m["matmul_gflops"])
            report["encode_prefill_matmul_fraction"] = report["encode_prefill"]["fraction"]
            print(
                f"matmul: encode+prefill {report['encode_prefill']['achieved_gflops']:.1f} GFLOP/s = "
                f"{report['encode_prefill_matmul_fraction']:.2f} of peak",
                flush=True,
            )
        if "roofline" not in skip:
            report["roofline"] = scenarios.roofline(a, model, text_type, m["read_gbs"])
            report["roofline_fraction"] = report["roofline"]["fraction"]
            r = report["roofline"]
            print(
                f"roofline: forward {r['forward_ms_per_token']:.2f} ms/token vs {r['roofline_ms_per_token']:.2f} "
                f"floor = {r['fraction']:.2f}",
                flush=True,
            )
        if "reuse" not in skip:
            other = scenarios.photo(Path(work.name) / "other.jpg", (800, 600), seed=1)
            reuse = scenarios.batch_and_repeat(a, args.image, other)
            report["reuse"] = reuse
            report["batch_second_vs_first"] = reuse["batch_second_vs_first"]
            report["repeat_vs_first"] = reuse["repeat_vs_first"]
            print(
                f"reuse: prefill tokens {reuse['prefill_tokens']}, batch_second_vs_first "
                f"{reuse['batch_second_vs_first']:.2f}, repeat_vs_first {reuse['repeat_vs_first']:.3f}",
                flush=True,
            )
        if "projector" not in skip:
            pc = scenarios.projector_copy(a, args.image, runs=3 if args.quick else 5)
            report["projector"] = pc
            report["projector_copy_vs_file"] = pc.get("copy_vs_file")
            if "encode_ms" in pc:
                print(
                    f"projector: encode {statistics.median(pc['encode_ms']['copy']):.0f} ms with the BF16 copy vs "
                    f"{statistics.median(pc['encode_ms']['file']):.0f} ms with the file: "
                    f"{pc['copy_vs_file']:.3f}",
                    flush=True,
                )
            else:
                print(f"projector: {pc['skipped']}", flush=True)
        if "detail" not in skip:
            big = scenarios.photo(Path(work.name) / "photo-1600x1200.jpg")
            lh = scenarios.low_vs_high(a, big, max_tokens=min(max_tokens, 16))
            report["detail_compare"] = lh
            report["low_vs_high"] = lh["ratio"]
            print(
                f"detail: low {lh['low']['total_ms']:.0f} ms ({lh['low']['image_tokens']} image tokens) vs high "
                f"{lh['high']['total_ms']:.0f} ms ({lh['high']['image_tokens']}): low_vs_high {lh['ratio']:.3f}",
                flush=True,
            )
        if "transformers" not in skip:
            _transformers(report, model.name, a, med, threads, runs=3 if args.quick else 5)
        # last of A's sections: the load it makes leaves A's thread tuner at fewer threads for a while
        if "busy" not in skip and threads > 1:
            busy = scenarios.busy_core(a, args.image, runs=2 if args.quick else 3)
            report["busy"] = busy
            report["busy_decode_adaptive_vs_fixed"] = busy["decode_adaptive_vs_fixed"]
            print(
                f"busy: with one core taken, decode {busy['adaptive']['decode_ms_per_token']:.1f} ms/token adaptive "
                f"(threads {busy['adaptive']['decode_threads']}) vs {busy['fixed']['decode_ms_per_token']:.1f} fixed "
                f"at {threads}: {busy['decode_adaptive_vs_fixed']:.3f}; whole analysis "
                f"{busy['total_adaptive_vs_fixed']:.3f}",
                flush=True,
            )
    finally:
        a.close()

    if "worker" not in skip:
        wo = worker_overhead.measure(args.model, args.model_dir, 2 if args.quick else 4, threads, max_tokens)
        report["worker"] = wo
        report["worker_overhead"] = wo["worker_overhead"]
        print(
            f"worker: worker_overhead {wo['worker_overhead']:.3f} (through the model process "
            f"{wo['median_ms']['worker']:.0f} ms vs in-process {wo['median_ms']['in_process']:.0f} ms); parent RSS "
            f"{wo['parent_rss_mib_with_worker']:.0f} MiB, worker peak {wo['worker_peak_rss_mib']:.0f} MiB",
            flush=True,
        )

    if "coldstart" not in skip:
        cs = coldstart.measure(model.text_path, model.mmproj_path, args.image, threads=threads, max_tokens=max_tokens)
        report["coldstart"] = cs
        report["peak_rss_ratio"] = cs.get("peak_rss_ratio")
        report["cold_start_ms"] = cs.get("first_result_ms")
        print(
            f"coldstart: first result {_f(cs.get('first_result_ms'), 0)} ms after start (process "
            f"{_f(cs.get('process_wall_ms'), 0)} ms), peak RSS {cs.get('peak_rss_bytes', 0) / 2**20:.0f} MiB = "
            f"{_f(cs.get('peak_rss_ratio'))}x model files "
            f"({_f(cs.get('peak_rss_vs_loaded_files'))}x the files loaded)",
            flush=True,
        )
        # a later process finds the task prompt's KV state saved by an earlier one (loupe.backends.prefix_store)
        with tempfile.TemporaryDirectory(prefix="loupe-bench-kv-") as kv:
            runs_kv = [
                coldstart.measure(
                    model.text_path,
                    model.mmproj_path,
                    args.image,
                    threads=threads,
                    max_tokens=max_tokens,
                    prefix_cache=Path(kv),
                )
                for _ in range(2)
            ]
        report["coldstart_prefix_from_disk"] = {"saving": runs_kv[0], "loading": runs_kv[1]}
        report["cold_start_prefix_from_disk_ms"] = runs_kv[1].get("first_result_ms")
        pre = [r.get("timings", {}).get("prefill_ms") for r in (cs, runs_kv[1])]
        print(
            f"coldstart: a later process with the task prefix on disk: first result "
            f"{_f(runs_kv[1].get('first_result_ms'), 0)} ms (prefill {_f(pre[1], 0)} ms vs {_f(pre[0], 0)} ms)",
            flush=True,
        )
    if "vocab" not in skip:
        vocab_dir = args.model_dir
        report["vocab"] = {
            fam: scenarios.constraint_per_token(
                scenarios.vocab_model(fam, vocab_dir),
                args.image,
                threads,
                runs=1 if args.quick else 3,
                max_tokens=max_tokens,
            )
            for fam in ("smolvlm", "gemma3")
        }
        v = report["vocab"]
        print(
            f"vocab: constraint {_f(v['smolvlm']['constraint_ms_per_token'], 3)} ms/token ({v['smolvlm']['n_vocab']}"
            f" tokens) vs {_f(v['gemma3']['constraint_ms_per_token'], 3)} ({v['gemma3']['n_vocab']})",
            flush=True,
        )
    work.cleanup()
    _remeasure(report, threads)
    report["bench_seconds"] = time.perf_counter() - t_run
    print(f"done in {report['bench_seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.json}")
    return report


def _remeasure(report: dict[str, Any], threads: int) -> None:
    """Measure the machine again at the end and keep the better figure of the two: this VM's speed drifts, and a
    peak measured in a slow minute inflated a fraction past 1 once. The fractions are recomputed if it changed."""
    m, again = report["machine"], machine.measure(threads)
    m["at_end"] = again
    m["read_gbs"], m["matmul_gflops"] = (
        max(m["read_gbs"], again["read_gbs"]),
        max(m["matmul_gflops"], again["matmul_gflops"]),
    )
    if "encode_prefill" in report:
        ep = report["encode_prefill"]
        ep["fraction"] = report["encode_prefill_matmul_fraction"] = ep["achieved_gflops"] / m["matmul_gflops"]
    if "roofline" in report:
        r = report["roofline"]
        r["roofline_ms_per_token"] = r["bytes_per_token"] / (m["read_gbs"] * 1e9) * 1000
        r["fraction"] = report["roofline_fraction"] = r["roofline_ms_per_token"] / r["forward_ms_per_token"]
    print(
        f"machine at the end: read {again['read_gbs']:.1f} GB/s, matmul {again['matmul_gflops']:.0f} GFLOP/s; "
        f"fractions use the better: roofline {_f(report.get('roofline_fraction'))}, matmul "
        f"{_f(report.get('encode_prefill_matmul_fraction'))}",
        flush=True,
    )


def _transformers(
    report: dict[str, Any], name: str, a: LoupeSide, med: dict[str, Any], threads: int, *, runs: int
) -> None:
    """C after a warm-up (A had one), then A and C alternating, so a drift in the machine's speed between sections
    does not land in the ratio."""
    why = hf_side.available()
    spec = SPECS[name]
    if why is None and spec.family != "smolvlm":
        why = "the transformers side is built for the smolvlm family"
    if why is not None:
        report["transformers"] = {"skipped": why}
        print(f"transformers: skipped ({why})")
        return
    image_tokens = int(med["image_tokens"] or 0)
    tiles = max(1, round(image_tokens / spec.image_tokens_per_tile))
    new = max(1, int(med["completion_tokens"] or 1))
    c = hf_side.TransformersSide(spec, threads)
    work = (int(med["prompt_tokens"]) - image_tokens, tiles, new)
    c.run(*work)
    rows, a_rows = [], []
    for _ in range(runs):
        a_rows.append(a.run())
        rows.append(c.run(*work))
    c_total = statistics.median(r["total_ms"] for r in rows)
    a_total = statistics.median(r["total_ms"] for r in a_rows)
    report["transformers"] = {
        "rows": rows,
        "a_total_ms": [r["total_ms"] for r in a_rows],
        "params": c.params,
        "tiles": tiles,
        "new_tokens": new,
    }
    report["loupe_vs_transformers"] = a_total / c_total
    print(
        f"transformers: C {c_total:.0f} ms for {tiles} tiles + {new} tokens vs A {a_total:.0f} ms (alternating): "
        f"loupe_vs_transformers {report['loupe_vs_transformers']:.3f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
