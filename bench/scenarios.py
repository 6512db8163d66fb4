"""bench.e2e's single-side measurements on Loupe: detail low vs high, batch reuse, repeats, roofline, vocab cost."""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from loupe.models.synthetic import SPECS, SyntheticModel, build
from PIL import Image, ImageDraw

from bench.flops import text_flops, vision_flops
from bench.sides import LoupeSide, bench_task

BYTES_PER_WEIGHT = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q4_0": 18 / 32,
    "q4_k_m": 144 / 256,
    "q6_k": 210 / 256,
}


def photo(path: Path, size: tuple[int, int] = (1600, 1200), seed: int = 0) -> Path:
    """A photo-like JPEG (gradient, shapes, sensor noise): what a phone gives, at `size`."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w * 180 + 40, yy / h * 160 + 50, (xx + yy) / (w + h) * 120 + 60], axis=-1)
    img = Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = int(rng.integers(0, w - 200)), int(rng.integers(0, h - 200))
        draw.ellipse(
            (x, y, x + int(rng.integers(40, 200)), y + int(rng.integers(40, 200))),
            fill=tuple(int(c) for c in rng.integers(0, 255, 3)),
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=90)
    return path


def low_vs_high(side: LoupeSide, image: Path, *, max_tokens: int) -> dict[str, Any]:
    """The same photo at detail low and high (cold each): total time ratio and image tokens."""
    rows = {
        d: side.run(image, task=bench_task(side.task.name.split("-")[0], max_tokens=max_tokens, detail=d))
        for d in ("low", "high")
    }
    low, high = rows["low"], rows["high"]
    return {"ratio": low["total_ms"] / high["total_ms"], "low": low, "high": high}


def projector_copy(side: LoupeSide, image: Path, *, runs: int) -> dict[str, Any]:
    """Image encoding with the BF16 projector copy A loads vs the published file, cold, alternating."""
    if side.backend.mmproj_file == side.backend.mmproj_path:
        return {"skipped": "no BF16 copy here (no BF16 dot product on this CPU, or nothing to convert)"}
    plain = LoupeSide(
        side.backend.text_path, side.backend.mmproj_path, side.backend.model.threads, side.task, image, projectors=False
    )
    try:
        plain.run()  # first-use costs
        rows: dict[str, list[float]] = {"copy": [], "file": []}
        for _ in range(runs):
            rows["copy"].append(side.run(image)["encode_ms"])
            rows["file"].append(plain.run(image)["encode_ms"])
    finally:
        plain.close()
    copy, file = statistics.median(rows["copy"]), statistics.median(rows["file"])
    return {
        "encode_ms": rows,
        "copy_vs_file": copy / file,
        "copy": str(side.backend.mmproj_file),
        "file": str(side.backend.mmproj_path),
    }


def busy_core(side: LoupeSide, image: Path, *, runs: int) -> dict[str, Any]:
    """Decode speed while another program keeps one core busy: A's adaptive decode threads vs the same backend with
    its thread count fixed, alternating, after warm-up runs under the load (three for the tuner to notice it)."""
    fixed = LoupeSide(
        side.backend.text_path,
        side.backend.mmproj_path,
        side.backend.model.threads,
        side.task,
        image,
        adapt_threads=False,
    )
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for _ in range(3):  # the tuner notices the load within ~3 answers (ThreadTuner.max_every)
            side.run(image)
        fixed.run(image)
        rows: dict[str, list[dict[str, Any]]] = {"adaptive": [], "fixed": []}
        for _ in range(runs):
            rows["adaptive"].append(side.run(image))
            rows["fixed"].append(fixed.run(image))
    finally:
        hog.kill()
        hog.wait()
        fixed.close()

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[name] if r.get(key) is not None)

    out: dict[str, Any] = {
        name: {k: med(name, k) for k in ("decode_ms_per_token", "encode_ms", "prefill_ms", "total_ms")} for name in rows
    }
    out["adaptive"]["decode_threads"] = [r["decode_threads"] for r in rows["adaptive"]]
    out["decode_adaptive_vs_fixed"] = out["adaptive"]["decode_ms_per_token"] / out["fixed"]["decode_ms_per_token"]
    out["total_adaptive_vs_fixed"] = out["adaptive"]["total_ms"] / out["fixed"]["total_ms"]
    return out


def batch_and_repeat(side: LoupeSide, first: Path, second: Path) -> dict[str, Any]:
    """Image 1 cold, then image 2 with the same task (shared prefix reused), then image 2 again (a retry/repeat)."""
    one = side.run(first)
    two = side.run(second, warm=True)
    again = side.run(second, warm=True)
    return {
        "batch_second_vs_first": two["total_ms"] / one["total_ms"],
        "repeat_vs_first": again["total_ms"] / two["total_ms"],
        "prefill_tokens": {
            "first": one["reuse"].get("prefill_tokens"),
            "second": two["reuse"].get("prefill_tokens"),
            "repeat": again["reuse"].get("prefill_tokens"),
        },
        "prefill_ms": {"first": one["prefill_ms"], "second": two["prefill_ms"], "repeat": again["prefill_ms"]},
        "encode_ms": {"first": one["encode_ms"], "second": two["encode_ms"], "repeat": again["encode_ms"]},
        "rows": {"first": one, "second": two, "repeat": again},
    }


def text_bytes_per_token(model: SyntheticModel, text_type: str) -> float:
    """Weight bytes one decoded token reads: the text file, less the token-embedding table when it is not also
    the output head (only one of its rows is read)."""
    spec = SPECS[model.name]
    size = model.text_path.stat().st_size
    if spec.tie_embeddings:
        return float(size)
    return size - (spec.vocab_size or 512) * spec.n_embd * BYTES_PER_WEIGHT.get(text_type, 4.0)


def roofline(side: LoupeSide, model: SyntheticModel, text_type: str, read_gbs: float) -> dict[str, Any]:
    """Decode ms/token against the time to read the weights once at the measured bandwidth."""
    forward = side.forward_ms_per_token()
    bytes_ = text_bytes_per_token(model, text_type)
    floor = bytes_ / (read_gbs * 1e9) * 1000
    return {
        "fraction": floor / forward,
        "forward_ms_per_token": forward,
        "roofline_ms_per_token": floor,
        "bytes_per_token": bytes_,
    }


def matmul_fraction(model: SyntheticModel, row: dict[str, Any], gflops_peak: float) -> dict[str, Any]:
    """Achieved GFLOP/s of image encoding + prefill (counted from the dimensions) over the measured matmul peak."""
    spec = SPECS[model.name]
    tiles = row["image_tokens"] / spec.image_tokens_per_tile
    flops = vision_flops(spec, round(tiles)) + text_flops(spec, row["prompt_tokens"])
    seconds = (row["encode_ms"] + row["prefill_ms"]) / 1000
    achieved = flops / seconds / 1e9 if seconds else float("nan")
    return {"fraction": achieved / gflops_peak, "achieved_gflops": achieved, "gflop": flops / 1e9, "tiles": tiles}


def vocab_model(family: str, out_dir: Path) -> SyntheticModel:
    """Tiny dimensions with the family's full vocabulary (SmolVLM 49,280; Gemma 3 262,144): the constraint's
    cost per token depends on the vocabulary, not on the model's size."""
    name = f"vocab-{family}"
    if name not in SPECS:  # only the benchmark's process sees this derived spec
        SPECS[name] = dataclasses.replace(SPECS[f"tiny-{family}"], name=name, vocab_size=SPECS["gemma3-4b"].vocab_size)
    return build(name, out_dir)


def constraint_per_token(model: SyntheticModel, image: Path, threads: int, *, runs: int, max_tokens: int) -> dict:
    """Median constraint ms per sampled token (mask + forced tokens) on a task, through the real backend."""
    side = LoupeSide(
        model.text_path, model.mmproj_path, threads, bench_task("defects", max_tokens=max_tokens, detail="low"), image
    )
    try:
        rows = [side.run() for _ in range(runs + 1)][1:]
    finally:
        side.close()
    per = [r["constraint_ms"] / r["completion_tokens"] for r in rows if r["completion_tokens"]]
    return {
        "constraint_ms_per_token": statistics.median(per) if per else None,
        "n_vocab": side.backend.n_vocab,
        "completion_tokens": [r["completion_tokens"] for r in rows],
    }
