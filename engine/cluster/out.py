"""`loupe batch --ray --out DIR`: for jobs too large for one writer, the workers write Parquet rows themselves.

The driver writes only DIR/_loupe_job.json (the job the rows belong to: key, task, model, settings, launch, inputs
and paths); each row is `loupe.cluster.rows.to_row` with `item_id` = the path's position in that file's `paths`.
A rerun into the same DIR sends only the paths no Parquet file there holds yet; `loupe import DIR` makes a store
job of it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loupe.cluster.actor import WorkOrder, model_stage
from loupe.cluster.driver import MAX_BLOCKS, ClusterOptions, root_cause
from loupe.cluster.modelref import ModelRef
from loupe.cluster.plan import plan
from loupe.cluster.rows import JOB_FILE
from loupe.cluster.session import ClusterError
from loupe.store.records import task_from_dict

ROWS_PER_FILE = 256  # rows gathered per Parquet file (an interrupted run loses at most this much work per writer)


@dataclass(frozen=True)
class OutSummary:
    """A run into an --out dir: items of the job, written now, found there already."""

    items: int
    written: int
    skipped: int
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        """The `--json` summary line."""
        return {"items": self.items, "written": self.written, "skipped": self.skipped, "wall_s": round(self.wall_s, 3)}


def done_paths(out: Path) -> set[str]:
    """Paths the Parquet files in `out` already hold (a file cut short by an interrupted run is skipped)."""
    import pyarrow.parquet as pq

    done: set[str] = set()
    for f in sorted(out.glob("*.parquet")):
        try:
            done.update(str(p) for p in pq.read_table(f, columns=["path"]).column("path").to_pylist())
        except Exception:
            continue
    return done


def _job_file(out: Path, job: Mapping[str, Any]) -> dict[str, Any]:
    """The job file to keep: this job's, or the one already there (same key) with any new paths appended."""
    path = out / JOB_FILE
    if not path.exists():
        return dict(job)
    try:
        there = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClusterError(f"{path}: cannot read the job file ({exc})") from None
    if there.get("key") != job["key"]:
        raise ClusterError(
            f"{out} holds the results of another job (other inputs, task, model or settings); give another --out"
        )
    known = set(there["paths"])
    return {**there, "paths": list(there["paths"]) + [p for p in job["paths"] if p not in known]}


def run_to_dir(out: Path, job: Mapping[str, Any], model: ModelRef, options: ClusterOptions) -> OutSummary:
    """Answer the job's paths not yet in `out` on the connected cluster, the workers writing Parquet there."""
    import ray

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    kept = _job_file(out, job)
    tmp = out / f".{JOB_FILE}.tmp"
    tmp.write_text(json.dumps(kept, indent=1), encoding="utf-8")
    os.replace(tmp, out / JOB_FILE)
    done = done_paths(out)
    todo = [{"item_id": i, "path": p} for i, p in enumerate(kept["paths"]) if p not in done]
    if todo:
        layout = plan(ray.nodes(), model.size, actors=options.actors, threads=options.threads)
        order = WorkOrder(task_from_dict(kept["task"]), model, options.models_dir, layout.threads)
        ds = ray.data.from_items(todo, override_num_blocks=min(len(todo), MAX_BLOCKS))
        ds = model_stage(ds, order, layout.actors, layout.threads)
        try:
            ds.write_parquet(str(out), min_rows_per_file=ROWS_PER_FILE)
        except Exception as exc:  # Ray's wrappers around what went wrong on a worker
            raise ClusterError(f"the Ray job failed: {root_cause(exc)}") from None
    return OutSummary(len(kept["paths"]), len(todo), len(kept["paths"]) - len(todo), time.perf_counter() - t0)
