"""The desktop app's work loop, Qt-free: load the model, then run dropped batches as store jobs.

One image at a time, with pause, cancel (one image or a whole batch) and retry; tasks with an `escalation` table
climb their ladder. Like `loupe batch`, the next image is read and decoded (loupe.core.prefetch) while the model
works on the current one.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from loupe import taskfile
from loupe.api import AnalyzeRequest, Engine
from loupe.batch import job_key
from loupe.core.cloud import CloudConfig
from loupe.core.errors import LoupeError
from loupe.core.images.load import LoadedImage, load_image
from loupe.core.prefetch import Prefetcher, Read
from loupe.core.tasks import Task
from loupe.core.types import Result, Status
from loupe.escalate import Policy
from loupe.store import Store, cache_key


@dataclass(frozen=True)
class LoadedModel:
    """What the model loader hands back: the engine, the model's name, and whether its output is meaningless."""

    engine: Engine
    name: str
    synthetic: bool


@dataclass(frozen=True)
class Batch:
    """Images dropped together with one task: recorded as one store job before any work starts."""

    id: int
    paths: tuple[str, ...]
    task: Task
    fresh: bool = False  # a retry: never answered from the cache
    policy: Policy | None = None  # the task's `escalation` table, parsed once when the batch is queued


@dataclass(frozen=True)
class CloudAccess:
    """The cloud settings and key the ladder may use (None config: the cloud is off)."""

    config: CloudConfig | None = None
    api_key: str | None = None


class RunnerEvents(Protocol):
    """What the runner reports, from its own thread (the bridge turns these into Qt signals)."""

    def model_loaded(self, name: str, synthetic: bool) -> None: ...
    def model_failed(self, message: str) -> None: ...
    def item_started(self, batch: int, index: int) -> None: ...
    def item_finished(
        self, batch: int, index: int, result_id: int, result: Result, cached: bool, steps: list[dict[str, Any]]
    ) -> None: ...
    def item_canceled(self, batch: int, index: int) -> None: ...
    def batch_done(self, batch: int, job_id: int) -> None: ...
    def batch_failed(self, batch: int, message: str) -> None: ...


@dataclass
class Runner:
    """One worker thread: loads the model first, then processes batches in order; `stop()` cancels and joins."""

    load: Callable[[], LoadedModel]
    db_path: Path
    events: RunnerEvents
    cloud: Callable[[], CloudAccess] = CloudAccess
    cancel: threading.Event = field(default_factory=threading.Event)
    prefetcher: Callable[[], Prefetcher] = Prefetcher  # made on the worker thread, closed when it ends

    def __post_init__(self) -> None:
        self._queue: queue.Queue[Batch | None] = queue.Queue()
        self._thread = threading.Thread(target=self._main, name="loupe-desktop-runner", daemon=False)
        self._next_id = 0
        self._lock = threading.Lock()
        self._skip: set[tuple[int, int]] = set()  # canceled before they started
        self._current: tuple[int, int] | None = None
        self._item_cancel = threading.Event()  # the image in hand
        self._resume = threading.Event()  # cleared while paused
        self._resume.set()
        self.model: LoadedModel | None = None

    def start(self) -> None:
        """Start loading the model in the background (the window is already open)."""
        self._thread.start()

    def submit(self, paths: Sequence[str], task: Task, *, fresh: bool = False) -> Batch:
        """Queue images; they run after the model has loaded and earlier batches are done."""
        self._next_id += 1
        unique = tuple(dict.fromkeys(str(Path(p).absolute()) for p in paths))  # the store keeps one item per path
        policy = taskfile.parse(task).policy if task.escalation is not None else None
        batch = Batch(self._next_id, unique, task, fresh, policy)
        self._queue.put(batch)
        return batch

    def pause(self, paused: bool) -> None:
        """Hold (or release) the queue between images; the image in hand finishes."""
        (self._resume.clear if paused else self._resume.set)()

    @property
    def paused(self) -> bool:
        """Whether the queue is held."""
        return not self._resume.is_set()

    def cancel_item(self, batch: int, index: int) -> None:
        """Stop one image: the running one is interrupted, a waiting one is skipped."""
        with self._lock:
            if self._current == (batch, index):
                self._item_cancel.set()
            else:
                self._skip.add((batch, index))

    def cancel_batch(self, batch: Batch) -> None:
        """Stop every image of a batch that has not finished."""
        for index in range(len(batch.paths)):
            self.cancel_item(batch.id, index)

    def stop(self, timeout: float | None = None) -> bool:
        """Cancel the image in hand, drop queued batches, and wait for the thread; True when it has ended."""
        self.cancel.set()
        self._item_cancel.set()
        self._resume.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- on the worker thread ------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self.model = self.load()
        except Exception as exc:  # any load failure is shown in the window, never a crash
            self.events.model_failed(f"{type(exc).__name__}: {exc}")
            return
        try:
            store = Store(self.db_path)
        except Exception as exc:  # e.g. an unusable store file: say so, free the model
            self.model.engine.close()
            self.events.model_failed(f"the results store cannot be used: {exc}")
            return
        self.events.model_loaded(self.model.name, self.model.synthetic)
        prefetch = self.prefetcher()
        try:
            while not self.cancel.is_set():
                batch = self._queue.get()
                if batch is None:
                    break
                try:
                    self._run(store, self.model, batch, prefetch)
                except Exception as exc:  # a store failure ends this batch, not the app
                    self.events.batch_failed(batch.id, f"{type(exc).__name__}: {exc}")
        finally:
            prefetch.close()
            store.close()
            self.model.engine.close()

    def _ladder(self, store: Store, model: LoadedModel, policy: Policy | None, job_id: int) -> Any:
        """The task's escalation ladder (cloud rungs only when the settings and the task allow), or None."""
        if policy is None:
            return None
        from loupe.escalate import Escalator

        access = self.cloud()
        return Escalator(
            policy,
            lambda: model.engine,
            access.config,
            api_key=access.api_key,
            store=store,
            job_id=job_id,
        )

    def _run(self, store: Store, model: LoadedModel, batch: Batch, prefetch: Prefetcher) -> None:
        settings: dict[str, Any] = {"source": "desktop"}
        if batch.policy is not None:
            from loupe.escalate import settings_key

            settings.update(settings_key(batch.task, batch.policy, self.cloud().config))
        job = store.create_job(
            key=f"{job_key(batch.paths, batch.task, model.name, settings)}:{uuid.uuid4().hex}",
            task=batch.task,
            model=model.name,
            settings=settings,
            launch={"app": "loupe-app", "batch": batch.id},
            paths=batch.paths,
        )
        ladder = self._ladder(store, model, batch.policy, job.id)
        try:
            items = store.items(job.id)
            for index, item in enumerate(items):
                self._resume.wait()
                if self.cancel.is_set():
                    break
                with self._lock:
                    if (batch.id, index) in self._skip:
                        self._skip.discard((batch.id, index))
                        self.events.item_canceled(batch.id, index)
                        continue
                    self._current = (batch.id, index)
                    self._item_cancel.clear()
                self.events.item_started(batch.id, index)
                with self._lock:
                    ahead = next(
                        (items[j].path for j in range(index + 1, len(items)) if (batch.id, j) not in self._skip), None
                    )  # the next one not canceled
                self._one(store, model, batch, index, item, job, ladder, prefetch, ahead)
                with self._lock:
                    self._current = None
        finally:
            if ladder is not None:
                ladder.close()
        counts = store.counts(job.id)
        store.set_state(job.id, "done" if counts["done"] == counts["items"] else "interrupted")
        self.events.batch_done(batch.id, job.id)

    def _climb(self, ladder: Any, path: str, task: Task, image: LoadedImage | None) -> Any:
        """The ladder for one image, like `Escalator.__call__` but cancelable between and within rungs."""
        from loupe.escalate import Escalation, escalate

        try:
            images = [image if image is not None else load_image(path)]
        except LoupeError:  # unreadable: answered locally, as an error result
            return Escalation(ladder.local().analyze(AnalyzeRequest((path,), task), cancel=self._item_cancel), ())
        return escalate(task, images, ladder.policy, ladder.runners, ladder.ledger, cancel=self._item_cancel)

    def _one(
        self,
        store: Store,
        model: LoadedModel,
        batch: Batch,
        index: int,
        item: Any,
        job: Any,
        ladder: Any,
        prefetch: Prefetcher,
        ahead: str | None,
    ) -> None:
        got: Read = prefetch.take(item.path)  # read ahead while the previous image ran, else only its identity
        ident = got.identity
        key = None if ident is None else cache_key(ident[0], job.task_key, job.model, job.settings_key)
        source = None if key is None or batch.fresh else store.cached_result_id(key)
        if ident is not None and key is not None and source is not None:
            rid, result = store.copy_result(
                item.id, source, path=item.path, sha256=ident[0], size=ident[1], cache_key=key
            )
            self.events.item_finished(batch.id, index, rid, result, True, list(store.result(rid).escalation))
            return
        if ahead is not None:
            prefetch.ahead(ahead)  # only on a miss: a run of cache hits never decodes images
        steps: list[dict[str, Any]] = []
        if ladder is not None:
            answer = self._climb(ladder, item.path, batch.task, got.image)
            result, steps = answer.result, answer.records()
        else:
            image = got.image if got.image is not None else item.path
            result = model.engine.analyze(AnalyzeRequest((image,), batch.task), cancel=self._item_cancel)
        if self._item_cancel.is_set() and result.error == "cancelled":
            self.events.item_canceled(batch.id, index)  # not stored: the item stays pending in the job
            return
        if result.status is Status.ERROR:
            key = None  # errors are never answered from the cache
        rid = store.save_result(
            item.id,
            result,
            sha256=ident[0] if ident else None,
            size=ident[1] if ident else None,
            cache_key=key,
            escalation=steps,
        )
        self.events.item_finished(batch.id, index, rid, result, False, steps)
