"""Throughput over Ray vs a local batch on this machine, and what the single-writer driver costs per image.

    python -m bench.scale [--json OUT] [--items 12] [--model smolvlm-256m] [--dir DIR]

The same images and task (`digit`: one short answer) on the same synthetic model (real dimensions, random
weights: bench._models): `loupe batch --threads 2` in this process, then `loupe batch --ray` on a Ray cluster
started in this process with 1 actor x 1 thread and 2 actors x 1 thread, each into a fresh store (no cache). Each
run's images/s is counted twice: over its whole wall time (actor start and model load included), and steady
(from the first result to the last). The driver's own time per image (store write; no image is read there) is
what bounds a cluster with one writer.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from loupe.batch import ItemOutcome

DIGIT = {
    "name": "digit",
    "instructions": "Give one digit.",
    "schema": {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["n"],
        "additionalProperties": False,
    },
    "options": {"max_tokens": 16},
}


def _images(folder: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (384, 512, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def _rates(n: int, wall: float, firsts: list[float], start: float) -> dict[str, float]:
    """images/s over the wall time, and steady (first result to last) when there are two results or more."""
    out = {"images": n, "wall_s": round(wall, 3), "images_per_s": round(n / wall, 4)}
    if len(firsts) >= 2:
        span = firsts[-1] - firsts[0]
        out["steady_images_per_s"] = round((len(firsts) - 1) / span, 4) if span > 0 else 0.0
        out["first_result_s"] = round(firsts[0] - start, 3)
    return out


def local(folder: Path, task: Path, model: Any, db: Path) -> dict[str, Any]:
    """`loupe batch --threads 2` (the command's own code path, in this process)."""
    from loupe.api import Engine
    from loupe.api.models import ModelSpec, open_backend
    from loupe.batch import BatchRunner, LazyEngine
    from loupe.cli.main import parser
    from loupe.cli.store import _start
    from loupe.store import Store

    args = parser().parse_args(
        ["batch", str(folder), "--task-file", str(task), "--model-path", str(model.text_path), "--mmproj",
         str(model.mmproj_path), "--threads", "2"]
    )  # fmt: skip
    stamps: list[float] = []
    with Store(db) as store:
        job_id, _ = _start(store, args)
        spec = ModelSpec(path=str(model.text_path), mmproj=str(model.mmproj_path), threads=2)
        lazy = LazyEngine(lambda: Engine(open_backend(spec).backend, model=model.text_path.stem))
        t0 = time.perf_counter()
        try:
            summary = BatchRunner(store, lazy.analyze).run(job_id, on_item=lambda _: stamps.append(time.perf_counter()))
        finally:
            lazy.close()
        wall = time.perf_counter() - t0
    assert summary.done == summary.items
    return {"run": "local batch, 2 threads", **_rates(summary.items, wall, stamps, t0)}


def on_ray(folder: Path, task: Path, model: Any, db: Path, actors: int) -> dict[str, Any]:
    """`loupe batch --ray` with `actors` actors of 1 thread on the in-process cluster."""
    from loupe.cli.main import parser
    from loupe.cli.store import _start
    from loupe.cluster.driver import ClusterOptions, run_cluster_job
    from loupe.cluster.modelref import model_ref
    from loupe.store import Store

    args = parser().parse_args(
        ["batch", str(folder), "--task-file", str(task), "--model-path", str(model.text_path), "--mmproj",
         str(model.mmproj_path)]
    )  # fmt: skip
    ref = model_ref(model.text_path.stem, [model.text_path, model.mmproj_path], catalog=False)
    stamps: list[float] = []

    def seen(_: ItemOutcome) -> None:
        stamps.append(time.perf_counter())

    with Store(db) as store:
        job_id, _ = _start(store, args)
        t0 = time.perf_counter()
        s = run_cluster_job(store, job_id, ref, ClusterOptions(actors=actors, threads=1), on_item=seen)
        wall = time.perf_counter() - t0
    assert s.batch.done == s.batch.items and s.sent == s.batch.items
    return {
        "run": f"ray, {actors} actor(s) x 1 thread",
        **_rates(s.batch.items, wall, stamps, t0),
        "driver_ms_per_image": round(s.driver_s_per_item * 1000, 3),
    }


NOTE = (
    "Each actor holds one model and works on its own item, so throughput grows with the number of actors the "
    "cluster holds (nodes x actors per node) as long as a model's time per image is far above the driver's own "
    "time per image. The driver writes every result into one SQLite file (WAL, one fsync per result): at "
    "{driver_ms:.1f} ms per image it saturates near {cap:.0f} images/s, i.e. about {actors:.0f} actors at "
    "{per_image:.1f} s per image. Past that, run with --out DIR (the workers write Parquet themselves, no single "
    "writer) and `loupe import DIR` afterwards, or split the inputs into several jobs with their own stores."
)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print (or write) the numbers."""
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="OUT", help="also write the numbers as JSON to OUT")
    p.add_argument("--items", type=int, default=12)
    p.add_argument("--model", default="smolvlm-256m", help="a synthetic model (bench._models; default smolvlm-256m)")
    p.add_argument("--dir", help="where images and stores go (default: a temp dir)")
    p.add_argument("--models", help="where the synthetic model files go (default: $LOUPE_BENCH_MODELS, else the cache)")
    args = p.parse_args(argv)
    import ray
    from loupe.cluster.session import connected

    from bench._models import synthetic

    root = Path(args.dir or tempfile.mkdtemp(prefix="loupe-scale-"))
    model = synthetic(args.model, Path(args.models)) if args.models else synthetic(args.model)
    folder = _images(root / "imgs", args.items)
    task = root / "digit.json"
    task.write_text(json.dumps(DIGIT))
    runs = [local(folder, task, model, root / "local.db")]
    with connected(None, init_args={"num_cpus": os.cpu_count() or 2}):
        for actors in (1, 2):
            runs.append(on_ray(folder, task, model, root / f"ray{actors}.db", actors))
        nodes = len(ray.nodes())
    driver_ms = max(r.get("driver_ms_per_image", 0.0) for r in runs) or 1.0
    per_image = 1 / max(runs[1].get("steady_images_per_s", runs[1]["images_per_s"]), 1e-9)  # one actor, 1 thread
    cap = 1000 / driver_ms
    report = {
        "machine": {"cpus": os.cpu_count(), "nodes": nodes},
        "model": args.model,
        "task": "digit (max_tokens 16)",
        "runs": runs,
        "note": NOTE.format(driver_ms=driver_ms, cap=cap, actors=cap * per_image, per_image=per_image),
    }
    out = io.StringIO()
    for r in runs:
        steady = r.get("steady_images_per_s")
        out.write(
            f"{r['run']:<28} {r['images_per_s']:7.3f} images/s over {r['wall_s']:.1f} s"
            + (f", steady {steady:.3f}" if steady is not None else "")
            + (f", driver {r['driver_ms_per_image']:.2f} ms/image" if "driver_ms_per_image" in r else "")
            + "\n"
        )
    out.write(report["note"] + "\n")
    print(out.getvalue(), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
