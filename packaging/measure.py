"""Measure a built bundle: its size, the frozen CLI's start time, and load + first result (CLI and serve).

Usage: python packaging/measure.py [dist/loupe] [--runs 3]   (uses a synthetic model built on the spot)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "engine" / "samples" / "scratched-panel.jpg"


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - t0


def _serve(bundle: Path, model: list[str], env: dict[str, str]) -> tuple[float, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(bundle / "loupe"), "serve", "--port", str(port), *model], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Application startup complete" in line:
                break
        ready = time.perf_counter() - t0
        image = "data:image/jpeg;base64," + base64.b64encode(SAMPLE.read_bytes()).decode()
        body = json.dumps({"image": image, "task": "describe", "options": {"max_tokens": 64}}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/analyze", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=600) as resp:
            json.load(resp)
        return ready, time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    """Print one JSON object with medians over --runs."""
    p = argparse.ArgumentParser()
    p.add_argument("bundle", nargs="?", default=str(ROOT / "dist" / "loupe"))
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    bundle = Path(args.bundle)
    from loupe.models.synthetic import build

    with tempfile.TemporaryDirectory() as tmp:
        m = build("tiny-smolvlm", Path(tmp))
        model = ["--model-path", str(m.text_path), "--mmproj", str(m.mmproj_path)]
        env = {**os.environ, "LOUPE_OFFLINE": "1", "LOUPE_DB": f"{tmp}/loupe.db", "LOUPE_MODEL_DIR": f"{tmp}/models"}
        analyze = [
            str(bundle / "loupe"),
            "analyze",
            str(SAMPLE),
            "--json",
            "--task",
            "describe",
            "--max-tokens",
            "64",
            *model,
        ]
        start = [_timed([str(bundle / "loupe"), "--help"], env) for _ in range(args.runs)]
        first = [_timed(analyze, env) for _ in range(args.runs)]
        serve = [_serve(bundle, model, env) for _ in range(args.runs)]
    print(
        json.dumps(
            {
                "bundle": str(bundle),
                "size_mb": round(_size(bundle) / 2**20, 1),
                "cli_start_s": round(statistics.median(start), 2),
                "cli_analyze_first_result_s": round(statistics.median(first), 2),
                "serve_ready_s": round(statistics.median(s[0] for s in serve), 2),
                "serve_first_result_s": round(statistics.median(s[1] for s in serve), 2),
                "runs": args.runs,
                "model": "tiny synthetic smolvlm (random weights)",
            }
        )
    )


if __name__ == "__main__":
    main()
