"""What the model process costs: the same analyses in-process and through loupe.backends.worker, alternating.

    python -m bench.worker_overhead [--model smolvlm-256m] [--runs 4] [--threads N] [--json OUT]
    python -m bench.worker_overhead --cancel --model gemma3-4b      # cancel inside an image encode, timed

Each analysis is cold (prompt KV and image embeddings dropped), timed from outside the Engine (wall clock of
Engine.analyze: the IPC of the request, the pixels and every streamed token included), in the order in-process,
worker, worker, in-process, ... after one untimed warm-up each. worker_overhead = median(worker) / median(in-process)
(the goal: <= 1.02 at SmolVLM-256M dimensions). Peak RSS: the parent while only the worker holds the model (the
model's memory is in the child), and the child's own peak (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from loupe.api import AnalyzeRequest, Engine
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.backends.worker import WorkerBackend
from loupe.core.hardware import default_threads
from loupe.core.types import Status

from bench._models import DEFAULT_DIR, choices, synthetic
from bench.coldstart import rss_bytes
from bench.sides import bench_task

SAMPLE = Path(__file__).resolve().parent.parent / "engine" / "samples" / "scratched-panel.jpg"


def measure(name: str, model_dir: Path, runs: int, threads: int, max_tokens: int) -> dict[str, Any]:
    model = synthetic(name, model_dir)
    task = bench_task("defects", max_tokens=max_tokens, detail="low")
    kwargs: dict[str, Any] = {"n_threads": threads, "adapt_threads": False, "projectors": None}
    worker = WorkerBackend(model.text_path, model.mmproj_path, **kwargs)
    parent_rss = rss_bytes("VmRSS")  # the worker holds the model; the parent holds Loupe
    local = LlamaCppBackend(model.text_path, model.mmproj_path, **kwargs)
    sides = {"in_process": local, "worker": worker}
    rows: dict[str, list[float]] = {k: [] for k in sides}
    tokens: dict[str, list[int]] = {k: [] for k in sides}
    try:
        order = ["in_process", "worker"]
        for i in range(runs + 1):
            for k in order if i % 2 == 0 else order[::-1]:
                sides[k].forget()
                t0 = time.perf_counter()
                result = Engine(sides[k]).analyze(AnalyzeRequest((SAMPLE,), task))
                ms = (time.perf_counter() - t0) * 1000
                if result.status is Status.ERROR:
                    raise SystemExit(f"{name} {k}: {result.error}")
                if i > 0:
                    rows[k].append(ms)
                    tokens[k].append(result.tokens.completion)
                print(f"  {name} {k:10s} run {i}: {ms:.0f} ms, {result.tokens.completion} tokens", flush=True)
        worker_peak = rss_bytes("VmHWM", worker.pid) if worker.pid else 0
    finally:
        local.close()
        worker.close()
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {
        "model": name,
        "threads": threads,
        "runs": runs,
        "median_ms": med,
        "rows_ms": rows,
        "tokens": tokens,
        "worker_overhead": med["worker"] / med["in_process"],
        "parent_rss_mib_with_worker": parent_rss / 2**20,
        "worker_peak_rss_mib": worker_peak / 2**20,
        "parent_peak_rss_mib_with_both": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def cancel_during_encode(name: str, model_dir: Path, threads: int) -> dict[str, Any]:
    """Cancel an analysis while the model process is inside mtmd's image encode (which llama.cpp cannot interrupt):
    seconds from the cancel to the result, and the encode's own length for scale. The worker_child hook only marks
    the moment the encode starts (`encode:sleep=0`)."""
    import os
    import tempfile
    import threading

    from loupe.backends.worker_child import FAULT_ENV, MARK_ENV

    model = synthetic(name, model_dir)
    task = bench_task("defects", max_tokens=32, detail="low")
    with tempfile.TemporaryDirectory() as tmp:
        mark = Path(tmp) / "encoding"
        os.environ[FAULT_ENV], os.environ[MARK_ENV] = "encode:sleep=0", str(mark)
        try:
            worker = WorkerBackend(model.text_path, model.mmproj_path, n_threads=threads, projectors=None)
        finally:
            del os.environ[FAULT_ENV], os.environ[MARK_ENV]
        try:
            engine = Engine(worker)
            cancel = threading.Event()
            future = engine.submit(AnalyzeRequest((SAMPLE,), task), cancel=cancel)
            while not mark.exists():
                time.sleep(0.005)
            time.sleep(1.0)  # well inside the encode
            t0 = time.perf_counter()
            cancel.set()
            result = future.result()
            cancel_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            again = engine.analyze(AnalyzeRequest((SAMPLE,), task))  # a new model process: load + a full analysis
            next_s = time.perf_counter() - t1
        finally:
            worker.close()
    print(
        f"{name}: cancel inside the image encode returned in {cancel_s:.3f} s ({result.error}); the next request "
        f"({again.status.value}) took {next_s:.1f} s with a fresh model process, its encode "
        f"{again.timings.encode_ms / 1000:.1f} s",
        flush=True,
    )
    return {
        "model": name,
        "cancel_s": cancel_s,
        "status": result.error,
        "next_s": next_s,
        "encode_s": again.timings.encode_ms / 1000,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smolvlm-256m", choices=choices())
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cancel", action="store_true", help="time a cancel inside an image encode instead")
    args = ap.parse_args(argv)
    if args.cancel:
        return cancel_during_encode(args.model, args.model_dir, args.threads or default_threads())
    r = measure(args.model, args.model_dir, args.runs, args.threads or default_threads(), args.max_tokens)
    print(
        f"worker_overhead {r['worker_overhead']:.3f} (worker {r['median_ms']['worker']:.0f} ms vs in-process "
        f"{r['median_ms']['in_process']:.0f} ms); parent RSS {r['parent_rss_mib_with_worker']:.0f} MiB with the "
        f"model in the worker, worker peak RSS {r['worker_peak_rss_mib']:.0f} MiB",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(r, indent=1) + "\n")
    return r


if __name__ == "__main__":
    main()
