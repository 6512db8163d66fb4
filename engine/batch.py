"""Batches that survive crashes: a job is recorded first, then each item's result is committed as it finishes."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from loupe.api import AnalyzeRequest, Engine
from loupe.backends.worker import CRASHED
from loupe.core.images.load import LoadedImage
from loupe.core.prefetch import Prefetcher, file_identity
from loupe.core.tasks import Task
from loupe.core.types import Result, Status
from loupe.escalate.policy import Escalation
from loupe.store.records import ItemRecord, JobRecord, cache_key, digest, dumps, task_key
from loupe.store.review import ReviewQueue
from loupe.store.sqlite import Store

# takes the item's path, or its image already read by a Prefetcher; an Escalation (--escalate) also stores its ladder
Analyze = Callable[[str | LoadedImage, Task], "Result | Escalation"]


@dataclass(frozen=True)
class ItemOutcome:
    """What happened to one item: its stored result, and whether the store answered it."""

    item: ItemRecord
    result_id: int
    result: Result
    cached: bool


@dataclass(frozen=True)
class BatchSummary:
    """Where a job stands after a run (counts over the whole job, earlier runs included)."""

    job: int
    items: int
    done: int
    cached: int
    errors: int
    review: int
    stopped: bool = False  # stopped early (Ctrl-C); resume to finish

    def to_dict(self) -> dict[str, int]:
        """The `--json` summary line."""
        return {
            "job": self.job,
            "items": self.items,
            "done": self.done,
            "cached": self.cached,
            "errors": self.errors,
            "review": self.review,
        }


def job_key(inputs: Sequence[str], task: Task, model: str, settings: dict[str, Any]) -> str:
    """Same inputs, task, model and settings: the same job (a plain re-run resumes it until it is done)."""
    return digest(dumps(list(inputs)), task_key(task), model, dumps(settings))


def open_job(
    store: Store,
    *,
    inputs: Sequence[str],
    paths: Sequence[str],
    task: Task,
    model: str,
    settings: dict[str, Any],
    launch: dict[str, Any],
) -> tuple[JobRecord, bool]:
    """The unfinished job launched the same way (given any new paths), or a new one; (job, resumed)."""
    key = job_key(inputs, task, model, settings)
    job = store.unfinished_job(key)
    if job is not None:
        store.add_items(job.id, paths)
        return job, True
    return store.create_job(key=key, task=task, model=model, settings=settings, launch=launch, paths=paths), False


class LazyEngine:
    """Loads the model on the first cache miss, so a re-run answered from the store never loads it."""

    def __init__(self, factory: Callable[[], Engine]) -> None:
        self._factory = factory
        self.engine: Engine | None = None

    def get(self) -> Engine:
        """The engine, loading the model now if it is not loaded yet."""
        if self.engine is None:
            self.engine = self._factory()
        return self.engine

    def analyze(self, image: str | LoadedImage, task: Task) -> Result:
        """One image (a path, or an image already read), one request."""
        return self.get().analyze(AnalyzeRequest((image,), task))

    def close(self) -> None:
        """Free the model if it was loaded."""
        if self.engine is not None:
            self.engine.close()


class BatchRunner:
    """Processes a job's pending items in order, committing each result before starting the next."""

    def __init__(self, store: Store, analyze: Analyze, *, prefetch: Prefetcher | None = None) -> None:
        self.store = store
        self.analyze = analyze
        self.prefetch = prefetch  # reads the next item while the model works on this one (the caller closes it)

    def run(
        self, job_id: int, *, stop: threading.Event | None = None, on_item: Callable[[ItemOutcome], None] | None = None
    ) -> BatchSummary:
        """Work until every item has a result or `stop` is set (checked between items)."""
        job = self.store.job(job_id)
        self.store.set_state(job_id, "running")
        stopped = False
        try:
            items = list(self.store.items(job_id, pending_only=True))
            for i, item in enumerate(items):
                if stop is not None and stop.is_set():
                    stopped = True
                    break
                outcome = self._one(job, item, items[i + 1].path if i + 1 < len(items) else None)
                if on_item is not None:
                    on_item(outcome)
        finally:
            counts = self.store.counts(job_id)
            self.store.set_state(job_id, "done" if counts["done"] == counts["items"] else "interrupted")
        return BatchSummary(job=job_id, review=len(ReviewQueue(self.store).pending(job_id)), stopped=stopped, **counts)

    def _one(self, job: JobRecord, item: ItemRecord, next_path: str | None) -> ItemOutcome:
        got = self.prefetch.take(item.path) if self.prefetch is not None else None
        ident = got.identity if got is not None else file_identity(item.path)
        if ident is not None:
            sha, size = ident
            key = cache_key(sha, job.task_key, job.model, job.settings_key)
            source = self.store.cached_result_id(key)
            if source is not None:
                rid, result = self.store.copy_result(
                    item.id, source, path=item.path, sha256=sha, size=size, cache_key=key
                )
                return ItemOutcome(item, rid, result, cached=True)
        if self.prefetch is not None and next_path is not None:
            self.prefetch.ahead(next_path)  # only on a miss: a run of cache hits never decodes images
        image = got.image if got is not None and got.image is not None else item.path
        answer = self.analyze(image, job.task)
        if _crashed(answer):  # once more on a fresh model process: a crash can be the machine's, not the file's
            answer = self.analyze(image, job.task)
        result, steps = (answer.result, answer.records()) if isinstance(answer, Escalation) else (answer, [])
        if _crashed(result):  # twice: this file crashes the model; recorded as such, so a resume never retries it
            result = replace(result, error=f"{result.error}; it crashed twice on this file, which is skipped")
        seen = result.images[0].sha256 if result.images and result.images[0].sha256 else None
        if seen is not None and (ident is None or seen != ident[0]):  # the file changed under us: trust the engine
            ident = (seen, ident[1] if ident else 0)
        key_ = (
            None
            if ident is None or result.status is Status.ERROR
            else cache_key(ident[0], job.task_key, job.model, job.settings_key)
        )
        rid = self.store.save_result(
            item.id,
            result,
            sha256=ident[0] if ident else None,
            size=ident[1] if ident else None,
            cache_key=key_,
            escalation=steps,
        )
        return ItemOutcome(item, rid, result, cached=False)


def _crashed(answer: Result | Escalation) -> bool:
    """Whether the model process died on this item (loupe.backends.worker's error), not a normal error."""
    result = answer.result if isinstance(answer, Escalation) else answer
    return result.status is Status.ERROR and (result.error or "").startswith(CRASHED)


@contextmanager
def stop_on_sigint(stop: threading.Event, notice: Callable[[], None] | None = None) -> Iterator[None]:
    """The first Ctrl-C sets `stop` (the batch ends after the current item); a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if notice is not None:
            notice()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
