"""The desktop app's work loop, Qt-free: load the model, then run dropped batches as store jobs, one image at a time."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from engine.api import AnalyzeRequest, Engine
from engine.batch import file_identity, job_key
from engine.store import Store
from engine.store.records import cache_key
from engine.tasks import Task
from engine.types import Result, Status


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


class RunnerEvents(Protocol):
    """What the runner reports, from its own thread (the bridge turns these into Qt signals)."""

    def model_loaded(self, name: str, synthetic: bool) -> None: ...
    def model_failed(self, message: str) -> None: ...
    def item_started(self, batch: int, index: int) -> None: ...
    def item_finished(self, batch: int, index: int, result_id: int, result: Result, cached: bool) -> None: ...
    def batch_done(self, batch: int, job_id: int) -> None: ...
    def batch_failed(self, batch: int, message: str) -> None: ...


@dataclass
class Runner:
    """One worker thread: loads the model first, then processes batches in order; `stop()` cancels and joins."""

    load: Callable[[], LoadedModel]
    db_path: Path
    events: RunnerEvents
    cancel: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._queue: queue.Queue[Batch | None] = queue.Queue()
        self._thread = threading.Thread(target=self._main, name="loupe-desktop-runner", daemon=False)
        self._next_id = 0
        self.model: LoadedModel | None = None

    def start(self) -> None:
        """Start loading the model in the background (the window is already open)."""
        self._thread.start()

    def submit(self, paths: Sequence[str], task: Task) -> Batch:
        """Queue images; they run after the model has loaded and earlier batches are done."""
        self._next_id += 1
        unique = tuple(dict.fromkeys(str(Path(p).absolute()) for p in paths))  # the store keeps one item per path
        batch = Batch(self._next_id, unique, task)
        self._queue.put(batch)
        return batch

    def stop(self, timeout: float | None = None) -> bool:
        """Cancel the image in hand, drop queued batches, and wait for the thread; True when it has ended."""
        self.cancel.set()
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
        try:
            while not self.cancel.is_set():
                batch = self._queue.get()
                if batch is None:
                    break
                try:
                    self._run(store, self.model, batch)
                except Exception as exc:  # a store failure ends this batch, not the app
                    self.events.batch_failed(batch.id, f"{type(exc).__name__}: {exc}")
        finally:
            store.close()
            self.model.engine.close()

    def _run(self, store: Store, model: LoadedModel, batch: Batch) -> None:
        settings = {"source": "desktop"}
        job = store.create_job(key=f"{job_key(batch.paths, batch.task, model.name, settings)}:{uuid.uuid4().hex}",
                               task=batch.task, model=model.name, settings=settings,
                               launch={"app": "loupe-app", "batch": batch.id}, paths=batch.paths)
        for index, item in enumerate(store.items(job.id)):
            if self.cancel.is_set():
                break
            self.events.item_started(batch.id, index)
            ident = file_identity(item.path)
            key = None if ident is None else cache_key(ident[0], job.task_key, job.model, job.settings_key)
            source = None if key is None else store.cached_result_id(key)
            if ident is not None and key is not None and source is not None:
                rid, result = store.copy_result(item.id, source, path=item.path, sha256=ident[0], size=ident[1],
                                                cache_key=key)
                self.events.item_finished(batch.id, index, rid, result, True)
                continue
            result = model.engine.analyze(AnalyzeRequest((item.path,), batch.task), cancel=self.cancel)
            if self.cancel.is_set() and result.error == "cancelled":
                break  # not stored: the item stays pending in the job
            if result.status is Status.ERROR:
                key = None  # errors are never answered from the cache
            rid = store.save_result(item.id, result, sha256=ident[0] if ident else None,
                                    size=ident[1] if ident else None, cache_key=key)
            self.events.item_finished(batch.id, index, rid, result, False)
        counts = store.counts(job.id)
        store.set_state(job.id, "done" if counts["done"] == counts["items"] else "interrupted")
        self.events.batch_done(batch.id, job.id)
