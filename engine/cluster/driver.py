"""A store job run over a Ray cluster: the driver is the single writer, the workers hold the models.

The driver sends only the job's pending items; a first cheap pass (Ray tasks) hashes their files, so items whose
bytes + task + model + settings are already in the store are copied there and never reach a model. The rest go
through Ray Data (`map_batches` over the ModelActor pool, actor restarts and task retries on, so a lost actor or node
re-runs only its unfinished items); each row is saved as it arrives, and a second answer for an item already stored
(a retry racing a result) is counted, never stored twice. Job states and resume are those of `loupe batch`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from loupe.batch import BatchSummary, ItemOutcome
from loupe.cluster.actor import MAX_TASK_RETRIES, WorkOrder, model_stage
from loupe.cluster.climb import DriverLadder
from loupe.cluster.modelref import ModelRef
from loupe.cluster.plan import Plan, plan
from loupe.cluster.rows import ItemAnswer, from_row
from loupe.cluster.session import ClusterError
from loupe.core.errors import LoupeError
from loupe.core.prefetch import file_identity
from loupe.core.types import Status
from loupe.models.catalog import ModelError
from loupe.store.records import ItemRecord, JobRecord, cache_key
from loupe.store.review import ReviewQueue
from loupe.store.sqlite import DuplicateResultError, Store

HASH_CHUNK = 256  # files hashed per Ray task in the first pass
MAX_BLOCKS = 100_000  # one item per block up to this many (a lost actor re-runs one item); beyond, a few per block


@dataclass(frozen=True)
class ClusterOptions:
    """How the job spreads: actors per node and threads per actor (None: plan.py's defaults), the models dir."""

    actors: int | None = None
    threads: int | None = None
    models_dir: str | None = None


@dataclass(frozen=True)
class ClusterSummary:
    """A cluster run: the job's summary as `loupe batch` gives it, and what this run sent, copied and spent."""

    batch: BatchSummary
    sent: int  # items sent to a model this run
    cached: int  # items answered from the store this run (the hash pass), never sent
    duplicates_ignored: int  # answers for items already stored (retries racing results): dropped
    driver_s_per_item: float  # the driver's own time per saved item (store write, ladder), excluding waiting
    wall_s: float
    actors: int = 0
    threads: int = 0
    workers: dict[str, int] = field(default_factory=dict)  # answers per actor ("node id/pid")

    def to_dict(self) -> dict[str, Any]:
        """The `--json` summary line: the batch's keys, then the cluster's."""
        return {
            **self.batch.to_dict(),
            "sent": self.sent,
            "cached_now": self.cached,
            "duplicates_ignored": self.duplicates_ignored,
            "actors": self.actors,
            "actor_threads": self.threads,
            "driver_ms_per_item": round(self.driver_s_per_item * 1000, 3),
            "wall_s": round(self.wall_s, 3),
            "nodes": len({w.split("/")[0] for w in self.workers}),
        }


def identities(paths: Sequence[str]) -> list[tuple[str, int] | None]:
    """(sha256, size) of each file, None where it cannot be read: the first pass, run as Ray tasks."""
    return [file_identity(p) for p in paths]


def _hash_all(paths: Sequence[str], stop: threading.Event | None) -> list[tuple[str, int] | None]:
    """Every path's identity, hashed on the cluster's workers in chunks (never on the driver)."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=MAX_TASK_RETRIES)(identities)
    chunks = [list(paths[i : i + HASH_CHUNK]) for i in range(0, len(paths), HASH_CHUNK)]
    refs = [remote.remote(c) for c in chunks]
    out: list[tuple[str, int] | None] = []
    for ref in refs:
        if stop is not None and stop.is_set():
            ray.cancel(ref)
            continue
        out.extend(tuple(x) if x is not None else None for x in ray.get(ref))  # type: ignore[misc]
    return out


@dataclass
class _Run:
    """What one run counts as it goes."""

    store: Store
    job: JobRecord
    on_item: Callable[[ItemOutcome], None] | None
    ladder: DriverLadder | None
    on_answer: Callable[[ItemAnswer], None] | None = None
    sent: int = 0
    cached: int = 0
    duplicates: int = 0
    saved: int = 0
    driver_s: float = 0.0
    stopped: bool = False
    workers: dict[str, int] = field(default_factory=dict)
    held: dict[str, list[tuple[ItemRecord, tuple[str, int]]]] = field(default_factory=dict)

    def key(self, sha: str) -> str:
        return cache_key(sha, self.job.task_key, self.job.model, self.job.settings_key)

    def copy(self, item: ItemRecord, ident: tuple[str, int]) -> bool:
        """Answer an item from the store when the same bytes have a result for this task, model and settings."""
        key = self.key(ident[0])
        source = self.store.cached_result_id(key)
        if source is None:
            return False
        try:
            rid, result = self.store.copy_result(
                item.id, source, path=item.path, sha256=ident[0], size=ident[1], cache_key=key
            )
        except DuplicateResultError:
            self.duplicates += 1
            return True
        self.cached += 1
        if self.on_item is not None:
            self.on_item(ItemOutcome(item, rid, result, cached=True))
        return True

    def save(self, row: dict[str, Any], items: dict[int, ItemRecord]) -> None:
        """Store one worker's answer (climbing the ladder first when there is one)."""
        t0 = time.perf_counter()
        answer = from_row(row)
        self.workers[answer.worker] = self.workers.get(answer.worker, 0) + 1
        if self.on_answer is not None:
            self.on_answer(answer)
        item = items[answer.item_id]
        result, steps = answer.result, []
        if self.ladder is not None:  # as a local ladder: a crashed (twice) local rung climbs too
            esc = self.ladder.climb(answer.path, result, self.job.task)
            result, steps = esc.result, esc.records()
        ident = (answer.sha256, answer.size or 0) if answer.sha256 else None
        key = None if ident is None or result.status is Status.ERROR else self.key(ident[0])
        try:
            rid = self.store.save_result(
                item.id,
                result,
                sha256=answer.sha256,
                size=answer.size,
                cache_key=key,
                escalation=steps,
                phashes=answer.phashes,
            )
        except DuplicateResultError:
            self.duplicates += 1
        else:
            self.saved += 1
            if self.on_item is not None:
                self.on_item(ItemOutcome(item, rid, result, cached=False))
        self.driver_s += time.perf_counter() - t0


def run_cluster_job(
    store: Store,
    job_id: int,
    model: ModelRef,
    options: ClusterOptions = ClusterOptions(),
    *,
    escalation: DriverLadder | None = None,
    on_item: Callable[[ItemOutcome], None] | None = None,
    stop: threading.Event | None = None,
    on_answer: Callable[[ItemAnswer], None] | None = None,
) -> ClusterSummary:
    """Work on a store job over the connected Ray cluster until every item has a result or `stop` is set.
    `on_item` sees each stored outcome (a progress bar); `on_answer` each worker's answer as it arrives (which actor
    gave it, before it is stored)."""
    import ray

    t0 = time.perf_counter()
    job = store.job(job_id)
    store.set_state(job_id, "running")
    run = _Run(store, job, on_item, escalation, on_answer)
    layout: Plan | None = None
    try:
        pending = store.items(job_id, pending_only=True)
        to_send: list[ItemRecord] = []
        for item, ident in zip(pending, _hash_all([i.path for i in pending], stop), strict=False):
            if ident is None:
                to_send.append(item)  # unreadable here: the worker says why, as an error result
            elif not run.copy(item, ident):
                run.held.setdefault(run.key(ident[0]), []).append((item, ident))
        to_send += [group[0][0] for group in run.held.values()]  # one per content: the others wait for its answer
        while to_send and not _stopping(stop):
            layout = layout or plan(ray.nodes(), model.size, actors=options.actors, threads=options.threads)
            task = escalation.worker_task(job.task) if escalation is not None else job.task
            order = WorkOrder(task, model, options.models_dir, layout.threads)
            run.sent += len(to_send)
            by_id = {i.id: i for i in to_send}
            for row in _answers(to_send, order, layout, stop):
                run.save(row, by_id)
            to_send = _after_round(run)
        run.stopped = _stopping(stop)
    finally:
        counts = store.counts(job_id)
        store.set_state(job_id, "done" if counts["done"] == counts["items"] else "interrupted")
    summary = BatchSummary(
        job=job_id, review=len(ReviewQueue(store).pending(job_id)), stopped=run.stopped or _stopping(stop), **counts
    )
    return ClusterSummary(
        summary,
        sent=run.sent,
        cached=run.cached,
        duplicates_ignored=run.duplicates,
        driver_s_per_item=run.driver_s / run.saved if run.saved else 0.0,
        wall_s=time.perf_counter() - t0,
        actors=layout.actors if layout else 0,
        threads=layout.threads if layout else 0,
        workers=dict(run.workers),
    )


def _stopping(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _after_round(run: _Run) -> list[ItemRecord]:
    """Items held back as copies of a sent one: answered from the store now, or sent next (its answer was an error)."""
    again: list[ItemRecord] = []
    for group in run.held.values():
        for item, ident in group[1:]:
            if not run.copy(item, ident):
                again.append(item)
    run.held = {}
    return again


def _answers(
    items: Sequence[ItemRecord], order: WorkOrder, layout: Plan, stop: threading.Event | None
) -> Iterator[dict[str, Any]]:
    """The workers' rows for `items`, as they finish (any order); a failed Ray job is a one-line ClusterError."""
    import ray

    rows = [{"item_id": i.id, "path": i.path} for i in items]
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
    ds = model_stage(ds, order, layout.actors, layout.threads)
    batches = ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0)
    try:
        for table in batches:
            yield from table.to_pylist()
            if _stopping(stop):
                return
    except (LoupeError, ModelError):
        raise
    except Exception as exc:  # Ray's wrappers around what went wrong on a worker
        raise ClusterError(f"the Ray job failed: {root_cause(exc)}") from None
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def root_cause(exc: BaseException) -> str:
    """What went wrong on a worker, in one line: the message of a Loupe error found anywhere in what Ray wrapped
    (an actor that could not load its model says why), else the innermost error's last line."""
    seen: set[int] = set()
    texts: list[str] = []
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        texts.append(str(cur))
        for attr in ("cause", "__cause__", "__context__", "base_exception"):
            nxt = getattr(cur, attr, None)
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    for text in texts:  # "loupe.cluster.modelref.ModelRefError: model 'x' is not on ..." in a traceback
        for line in reversed(text.splitlines()):
            found = _LOUPE_ERROR.match(line.strip())
            if found:
                return found.group(1)[:500]
    lines = [t for t in texts[-1].strip().splitlines() if t.strip() and not t.startswith((" ", "Traceback"))]
    return (lines[-1] if lines else type(exc).__name__)[:500]


_LOUPE_ERROR = re.compile(r"^loupe\.[\w.]+(?:Error|Installed|Corrupt): (.+)$")


__all__ = ["ClusterOptions", "ClusterSummary", "identities", "run_cluster_job"]
