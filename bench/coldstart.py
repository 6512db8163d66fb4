"""Cold start and peak memory: a fresh process loads the model and analyses one image (run by bench.e2e).

    python -m bench.coldstart TEXT MMPROJ IMAGE [--threads N] [--task T] [--detail low] [--max-tokens N]

Prints one JSON line: seconds from interpreter start to the first result, the phases, and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

T_START = time.perf_counter()  # as early as this module runs; the parent also times the whole process


def rss_bytes(field: str = "VmRSS", pid: int | str = "self") -> int:
    """Resident set size now (VmRSS) or its high-water mark (VmHWM) of a process (this one by default) from Linux
    /proc; 0 elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss_bytes() -> int:
    """This process's peak RSS. VmHWM belongs to the memory map made at exec; ru_maxrss is not used because
    Linux carries the forking parent's high-water mark over exec (a big parent would inflate it)."""
    return rss_bytes("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(argv: list[str] | None = None) -> dict[str, Any]:
    """Load, analyze, report (in this process)."""
    ap = argparse.ArgumentParser(prog="python -m bench.coldstart")
    ap.add_argument("text")
    ap.add_argument("mmproj")
    ap.add_argument("image")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--task", default="describe")
    ap.add_argument("--detail", default="low")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prefix-cache", default=None, help="a directory for the task prompt's KV state (default: none)")
    args = ap.parse_args(argv)
    from loupe.api import AnalyzeRequest, Engine
    from loupe.backends.llama_cpp import LlamaCppBackend
    from loupe.backends.prefix_store import PrefixStore
    from loupe.backends.projector_bf16 import ProjectorCache
    from loupe.core.tasks import builtin_task

    t_import = time.perf_counter()
    rss_imported = rss_bytes()
    store = PrefixStore(Path(args.prefix_cache)) if args.prefix_cache else None
    backend = LlamaCppBackend(
        args.text, args.mmproj, n_threads=args.threads, prefix_store=store, projectors=ProjectorCache.default()
    )  # as the CLI does (made once, before the bench)
    t_load = time.perf_counter()
    rss_loaded = rss_bytes()
    task = builtin_task(args.task).with_options(detail=args.detail, max_tokens=args.max_tokens, retries=0)
    with Engine(backend) as engine:
        result = engine.analyze(AnalyzeRequest((args.image,), task))
        t_done = time.perf_counter()
    return {
        "status": result.status.value,
        "timings": result.to_dict()["timings"],  # the first analysis' stages (first-use costs land here)
        "import_ms": (t_import - T_START) * 1000,
        "load_ms": (t_load - t_import) * 1000,
        "analyze_ms": (t_done - t_load) * 1000,
        "first_result_ms": (t_done - T_START) * 1000,
        "peak_rss_bytes": peak_rss_bytes(),
        "projector_file": str(backend.mmproj_file),
        "projector_file_bytes": backend.mmproj_file.stat().st_size,
        "rss_after_imports_bytes": rss_imported,  # Python, numpy, llama.cpp, LLGuidance, ... before any model
        "rss_after_load_bytes": rss_loaded,  # + weights touched at load, KV cache, projector
    }


def measure(
    text: Path,
    mmproj: Path,
    image: Path,
    *,
    threads: int,
    max_tokens: int = 32,
    prefix_cache: Path | None = None,
) -> dict[str, Any]:
    """Run the child in a fresh interpreter; add the wall time from spawn to exit and the model file sizes."""
    cmd = [
        sys.executable,
        "-m",
        "bench.coldstart",
        str(text),
        str(mmproj),
        str(image),
        "--threads",
        str(threads),
        "--max-tokens",
        str(max_tokens),
    ]
    if prefix_cache is not None:
        cmd += ["--prefix-cache", str(prefix_cache)]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parent.parent)
    wall = (time.perf_counter() - t) * 1000
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or f"exit {done.returncode}"}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    files = text.stat().st_size + mmproj.stat().st_size
    # the ratio is to the files the user downloaded; with a BF16 projector copy loaded instead, also to the files loaded
    loaded = text.stat().st_size + out.get("projector_file_bytes", mmproj.stat().st_size)
    out.update(
        process_wall_ms=wall,
        model_file_bytes=files,
        peak_rss_ratio=out["peak_rss_bytes"] / files,
        loaded_file_bytes=loaded,
        peak_rss_vs_loaded_files=out["peak_rss_bytes"] / loaded,
    )
    return out


if __name__ == "__main__":
    print(json.dumps(child()))
