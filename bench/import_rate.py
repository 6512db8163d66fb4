"""How fast one SQLite store takes results: the single-writer limit of a cluster run (packaging/ray/README.md).

    python -m bench.import_rate [--rows 5000] [--json OUT]

Synthetic result rows (the defects task's shape, one 576-float image vector and a pHash each, distinct paths) are
written as Parquet with a job file, as `loupe batch --ray --out DIR` writes them, then:
- import: `loupe import`'s path (loupe.cluster.importer.import_dir: one commit per 1,024 rows), rows/s;
- peak_mb: the peak of Python's traced memory in two more imports, the import loop alone and with the summary's
  review count (which reads the job's results);
- again: the same folder imported a second time (every row skipped), rows/s;
- per_row_commit: the same results saved one transaction (one fsync) each, as the driver stores them with --db.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from loupe.batch import job_key, open_job
from loupe.cluster import importer
from loupe.cluster.rows import JOB_FILE, ItemAnswer, from_row, rows_to_columns, to_row
from loupe.core.tasks import builtin_task
from loupe.core.types import ImageEmbedding, ImageInfo, Result, Status, Timings, Tokens
from loupe.store import Store
from loupe.store.records import task_to_dict

MODEL = "smolvlm-256m"
SETTINGS = {"backend": "llama_cpp", "model_files": [["text.gguf", 175_000_000], ["mmproj.gguf", 104_000_000]]}
INPUTS = ["/data/in"]


def write_out(folder: Path, n: int, per_file: int = 10_000) -> list[str]:
    """An --out folder of `n` rows; returns the item paths."""
    task = builtin_task("defects")
    paths = [f"/data/in/{i:08d}.jpg" for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    job = {
        "key": job_key(INPUTS, task, MODEL, SETTINGS),
        "task": task_to_dict(task),
        "model": MODEL,
        "settings": SETTINGS,
        "launch": {"inputs": INPUTS, "model": MODEL, "model_path": None, "mmproj": None},
        "inputs": INPUTS,
        "paths": paths,
    }
    (folder / JOB_FILE).write_text(json.dumps(job))
    for start in range(0, n, per_file):
        rows = [to_row(_answer(i, paths[i])) for i in range(start, min(n, start + per_file))]
        pq.write_table(pa.table(rows_to_columns(rows)), folder / f"part-{start:08d}.parquet")
    return paths


def _answer(i: int, path: str) -> ItemAnswer:
    data = {"defects": [{"label": "scratch", "box_2d": [100, 200, 300, 400], "severity": 2, "reason": "a line"}]}
    result = Result(
        status=Status.OK,
        task="defects",
        model=MODEL,
        backend="llama_cpp",
        images=(ImageInfo("img_01", path, f"{i:064x}", 640, 480, 512, 384, ()),),
        data=data,
        raw=json.dumps(data),
        confidence={"/defects/0/label": 0.9, "/defects/0/severity": 0.7},
        timings=Timings(total_ms=2500.0),
        tokens=Tokens(prompt=120, image=64, completion=40),
        embeddings=(ImageEmbedding("img_01", MODEL, "high", bytes(4 * 576)),),
    )
    return ItemAnswer(i, path, f"{i:064x}", 50_000, result, (), {"img_01": i})


def measure(rows: int, work: Path) -> dict[str, Any]:
    """The three rates (and memory) for `rows` rows, in `work`."""
    out = work / "out"
    write_out(out, rows)
    report: dict[str, Any] = {"rows": rows}
    with Store(work / "import.db") as store:  # timed without tracing (tracemalloc slows Python down)
        t0 = time.perf_counter()
        summary = importer.import_dir(store, out)
        seconds = time.perf_counter() - t0
    assert summary.imported == rows
    report["import"] = {"seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1)}
    report["peak_mb"] = {
        "import_loop": _peak(work / "traced-loop.db", out, count_review=False),
        "with_review_count": _peak(work / "traced.db", out, count_review=True),
    }
    with Store(work / "import.db") as store:
        t0 = time.perf_counter()
        again = importer.import_dir(store, out)
        seconds = time.perf_counter() - t0
    assert again.imported == 0 and again.skipped == rows
    report["again"] = {"seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1)}
    spec = importer.read_job_file(out)
    answers = [from_row(r) for f in importer.row_files(out) for r in pq.read_table(f).to_pylist()]
    with Store(work / "per-row.db") as store:
        job, _ = open_job(
            store,
            inputs=spec.inputs,
            paths=spec.paths,
            task=spec.task,
            model=spec.model,
            settings=spec.settings,
            launch=spec.launch,
        )
        ids = {i.path: i.id for i in store.items(job.id)}
        t0 = time.perf_counter()
        for a in answers:
            store.save_result(
                ids[a.path], a.result, sha256=a.sha256, size=a.size, cache_key=a.sha256, phashes=a.phashes
            )
        seconds = time.perf_counter() - t0
    report["per_row_commit"] = {"seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1)}
    return report


def _peak(db: Path, out: Path, *, count_review: bool) -> float:
    """Peak traced memory (MB) of one import; without the summary's review count: the import loop alone."""
    review = importer.ReviewQueue.pending
    if not count_review:
        importer.ReviewQueue.pending = lambda self, job_id=None: []  # type: ignore[method-assign,assignment,misc]
    tracemalloc.start()
    try:
        with Store(db) as store:
            importer.import_dir(store, out)
        return round(tracemalloc.get_traced_memory()[1] / 1e6, 1)
    finally:
        tracemalloc.stop()
        importer.ReviewQueue.pending = review  # type: ignore[method-assign]


def main() -> None:
    """Run and print (and write --json)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--json", type=Path, help="write the report here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="loupe-import-rate-") as tmp:
        report = measure(args.rows, Path(tmp))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
