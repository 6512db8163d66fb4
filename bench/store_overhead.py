"""What the results store costs per image, and how much of a re-run it answers (side by side, one run).

    python -m bench.store_overhead [--items 1000] [--dir DIR] [--synthetic 100]

The model is the scripted fake backend (loupe.backends.fake.FakeBackend: no inference) over real PNG files
on disk. The store's overhead is a batch's wall time minus the time spent inside analyze: hashing the file,
the cache lookup, committing the result (WAL, synchronous=FULL: one fsync per result), job bookkeeping.
`--synthetic N` repeats it on the tiny random-weight llama.cpp model (the overhead should not change).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.fake import FakeBackend
from loupe.batch import BatchRunner, BatchSummary, open_job
from loupe.core.tasks import Task, builtin_task
from loupe.core.types import Result
from loupe.store import Store
from PIL import Image

CAPTION = '{"caption": "random noise", "tags": ["noise", "test"]}'


def make_images(folder: Path, n: int) -> list[str]:
    """`n` distinct 32x32 PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def fs_type(path: Path) -> str:
    """The file system holding `path` (from /proc/mounts; 'unknown' elsewhere)."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    best = max((m for m in mounts if str(path.resolve()).startswith(m[0])), key=lambda m: len(m[0]), default=None)
    return best[1] if best else "unknown"


def measure(
    label: str, analyze: Callable[[str, Task], Result], paths: list[str], task: Task, db: Path, model: str
) -> None:
    """A batch through the store (its wall time minus the time spent inside analyze is the store's share),
    then a re-run of the same batch, answered from the store."""
    spent = [0.0]

    def timed(path: str, t: Task) -> Result:
        t0 = time.perf_counter()
        try:
            return analyze(path, t)
        finally:
            spent[0] += time.perf_counter() - t0

    n = len(paths)
    with Store(db) as store:

        def batch() -> tuple[BatchSummary, float]:
            t0 = time.perf_counter()
            job, _ = open_job(
                store,
                inputs=[str(Path(paths[0]).parent)],
                paths=paths,
                task=task,
                model=model,
                settings={"bench": label},
                launch={},
            )
            summary = BatchRunner(store, timed).run(job.id)
            return summary, (time.perf_counter() - t0) * 1000 / n

        first, wall = batch()
        analyze = spent[0] * 1000 / n
        again, rerun = batch()
    assert first.done == n and again.done == n and first.cached == 0
    print(f"[{label}] {n} images")
    print(
        f"  batch through the store  {wall:8.2f} ms/image, of which analysis {analyze:.2f} "
        f"-> store overhead {wall - analyze:.2f} ms/image"
    )
    print(
        f"  re-run of the same batch {rerun:8.2f} ms/image -> cache hits {again.cached}/{again.items} "
        f"= {100 * again.cached / again.items:.1f} %"
    )


def commit_ms(db: Path, n: int = 200) -> float:
    """Median time of one committed result alone (insert + item update + fsync)."""
    task = builtin_task("describe")
    result = Engine(FakeBackend([CAPTION])).analyze(AnalyzeRequest((str(db.parent / "imgs" / "00000.png"),), task))
    times = []
    with Store(db) as store:
        job = store.create_job(
            key="commit", task=task, model="fake", settings={}, launch={}, paths=[f"/c/{i}" for i in range(n)]
        )
        for item in store.items(job.id):
            t0 = time.perf_counter()
            store.save_result(item.id, result, sha256="x", size=1, cache_key=None)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Print the numbers."""
    p = argparse.ArgumentParser(prog="python -m bench.store_overhead", description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--dir", help="where to put images and the store (default: a temp dir)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="also N images on the tiny llama.cpp model")
    args = p.parse_args(argv)
    root = Path(args.dir or tempfile.mkdtemp(prefix="loupe-bench-"))
    paths = make_images(root / "imgs", args.items)
    print(f"store on {root} ({fs_type(root)}), SQLite WAL + synchronous=FULL, {os.cpu_count()} CPUs")
    print(f"one commit alone: {commit_ms(root / 'commit.db'):.2f} ms (median)")
    describe = builtin_task("describe")
    fake = Engine(FakeBackend([CAPTION]), model="fake")
    measure(
        "fake backend",
        lambda path, task: fake.analyze(AnalyzeRequest((path,), task)),
        paths,
        describe,
        root / "fake.db",
        "fake",
    )
    if args.synthetic:
        from loupe.backends.llama_cpp import LlamaCppBackend
        from loupe.models.synthetic import build

        model = build("tiny-smolvlm", root / "model")
        tiny = Engine(LlamaCppBackend(model.text_path, model.mmproj_path, model_id="tiny", n_threads=1), model="tiny")
        task = describe.with_options(max_tokens=24)
        measure(
            "tiny llama.cpp model",
            lambda path, t: tiny.analyze(AnalyzeRequest((path,), t)),
            paths[: args.synthetic],
            task,
            root / "tiny.db",
            "tiny",
        )
        tiny.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
