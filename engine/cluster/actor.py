"""The Ray actor that holds one loaded model on a worker and answers items: read, hash, analyze, row.

Ray Data calls it per batch (`map_batches(ModelActor, batch_size=1, ...)`); each row in is an item (id, path), each
row out is `loupe.cluster.rows.to_row` of its answer. The image is read where the actor runs (the driver never reads
it); a model-process crash is retried once as `loupe batch` does; anything else that goes wrong with one item is an
`error` result for that item, never an exception that would stop the job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loupe.api import AnalyzeRequest, Engine
from loupe.api.models import open_backend
from loupe.api.pipeline import error_result
from loupe.backends.worker import CRASHED
from loupe.cluster.modelref import ModelRef, locate, spec_for
from loupe.cluster.rows import ItemAnswer, rows_to_columns, to_row
from loupe.core.prefetch import file_identity
from loupe.core.tasks import Task
from loupe.core.types import Result, Status
from loupe.store.index import phash_file


@dataclass(frozen=True)
class WorkOrder:
    """What every actor of a job is given: the task as the worker runs it, the model, where models are, threads."""

    task: Task
    model: ModelRef
    models_dir: str | None = None
    threads: int | None = None


def crashed(result: Result) -> bool:
    """Whether the model process died on this item (loupe.backends.worker's error), not a normal error."""
    return result.status is Status.ERROR and (result.error or "").startswith(CRASHED)


def worker_name() -> str:
    """This actor's node and process ("node id/pid"), carried by its rows."""
    import ray

    return f"{ray.get_runtime_context().get_node_id()}/{os.getpid()}"


class ModelActor:
    """One model, loaded once per actor (files found and checked on this node), answering one item per call."""

    def __init__(self, order: WorkOrder) -> None:
        self.order = order
        files = locate(order.model, Path(order.models_dir) if order.models_dir else None)
        self.spec = spec_for(order.model, files, order.threads)
        self.engine = self._load()
        self.worker = worker_name()

    def _load(self) -> Engine:
        opened = open_backend(self.spec)
        return Engine(opened.backend, model=opened.name)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        """Answer every item of a batch (Ray Data gives one: batch_size=1)."""
        rows = [self.answer(int(i), str(p)) for i, p in zip(batch["item_id"], batch["path"], strict=True)]
        return rows_to_columns([to_row(r) for r in rows])

    def answer(self, item_id: int, path: str) -> ItemAnswer:
        """One item: its file identity, the task's result (once more after a model crash) and its pHashes."""
        task = self.order.task
        ident = file_identity(path)
        try:
            result = self.engine.analyze(AnalyzeRequest((path,), task))
            if crashed(result):  # once more on a fresh model process: a crash can be the machine's, not the file's
                result = self.engine.analyze(AnalyzeRequest((path,), task))
            if crashed(result):  # twice: this file crashes the model; recorded so a resume never retries it
                result = replace(result, error=f"{result.error}; it crashed twice on this file, which is skipped")
        except Exception as exc:  # one item's trouble is that item's error result, never the job's end
            why = f"{type(exc).__name__}: {exc}"
            result = error_result(task, self.engine.backend.name, self.engine.model, why, [path])
        seen = result.images[0].sha256 if result.images and result.images[0].sha256 else None
        if seen is not None and (ident is None or seen != ident[0]):  # the file changed under us: trust the engine
            ident = (seen, ident[1] if ident else 0)
        phashes = {i.id: phash_file(i.path) if i.width and i.height else None for i in result.images}
        return ItemAnswer(
            item_id,
            path,
            ident[0] if ident else None,
            ident[1] if ident else None,
            result,
            phashes=phashes,
            worker=self.worker,
        )

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()


MAX_RESTARTS = 4  # per actor: a killed actor (or one on a lost node) comes back this many times
MAX_TASK_RETRIES = 4  # per item on a dead actor: re-run on its restarted self (then the job fails, items stay pending)


def bound(order: WorkOrder) -> type[ModelActor]:
    """A ModelActor class with the job's order built in: shipped with the class (never as constructor arguments in
    the object store, which a restart after a lost node could not read back)."""

    class JobActor(ModelActor):
        """A ModelActor for this job's order."""

        def __init__(self) -> None:
            super().__init__(order)

    return JobActor


def model_stage(ds: Any, order: WorkOrder, actors: int, threads: int) -> Any:
    """`ds` (rows of item_id, path) mapped through a pool of `actors` model actors of `threads` CPUs each, with
    actor restarts and task retries on, spread over the nodes."""
    import warnings

    import ray.data

    with warnings.catch_warnings():  # Ray 2.60 deprecates passing restart options this way; it has no other yet
        warnings.simplefilter("ignore", DeprecationWarning)
        return ds.map_batches(
            bound(order),
            batch_size=1,
            # one item queued per actor: work goes to whichever actor is free, and a lost actor holds only one
            compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
            num_cpus=threads,
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_TASK_RETRIES,
            scheduling_strategy="SPREAD",
        )
