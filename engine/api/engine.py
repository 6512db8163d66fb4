"""The engine's one entry point for clients (CLI, desktop): Engine.analyze / Engine.submit."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loupe.api.pipeline import Event, error_result, run
from loupe.backends.base import Backend
from loupe.core.constrain.base import Constraint, with_layout
from loupe.core.errors import LoupeError
from loupe.core.images.load import LoadedImage, load_image
from loupe.core.schema.formats import with_formats
from loupe.core.tasks import Task
from loupe.core.types import Result, Timings

ImageInput = str | Path | LoadedImage


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalyzeRequest:
    """Images analyzed together in one request (ids img_01, img_02, ... in order) with one task."""

    images: tuple[ImageInput, ...]
    task: Task


class Engine:
    """Owns one loaded backend; analyzes requests one at a time on a worker thread when submitted."""

    def __init__(self, backend: Backend, *, model: str | None = None) -> None:
        self.backend = backend
        self.model = model or backend.model_id
        self._constraints: dict[str, Constraint] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loupe-engine")
        self._load_reported = False

    def constraint_for(self, task: Task) -> Constraint:
        """The compiled constraint for a task's schema (cached per schema and the options the grammar follows)."""
        opts = task.options
        key = json.dumps([task.schema, opts.allow_refusal, opts.layout, opts.format], sort_keys=True)
        if key not in self._constraints:
            schema = with_layout(with_formats(task.schema, opts.format), opts.layout)
            self._constraints[key] = self.backend.compile(schema, allow_refusal=opts.allow_refusal)
        return self._constraints[key]

    def analyze(
        self, request: AnalyzeRequest, *, cancel: threading.Event | None = None, on_event: Event | None = None
    ) -> Result:
        """Run one request; bad input and backend failures come back as `status == error`, never raise."""
        paths = [i.path if isinstance(i, LoadedImage) else str(i) for i in request.images]
        try:
            images = [i if isinstance(i, LoadedImage) else load_image(i) for i in request.images]
            constraint = self.constraint_for(request.task)
            result = run(
                request.task, images, self.backend, constraint, model=self.model, cancel=cancel, on_event=on_event
            )
        except LoupeError as err:
            return error_result(request.task, self.backend.name, self.model, err, paths)
        except Exception as err:  # a bug, never the caller's problem: an error result, and the traceback in the log
            log.exception("analysis of %s failed unexpectedly", paths)
            problem = " ".join(f"internal error ({type(err).__name__}: {err})".split())[:300]
            return error_result(request.task, self.backend.name, self.model, problem, paths)
        if not self._load_reported:
            self._load_reported = True
            result = replace(result, timings=replace(result.timings, load_ms=round(self.backend.load_ms, 2)))
        return result

    def submit(
        self, request: AnalyzeRequest, *, cancel: threading.Event | None = None, on_event: Event | None = None
    ) -> Future[Result]:
        """Queue a request on the engine's worker thread; the Future never raises for bad input."""
        return self._pool.submit(self.analyze, request, cancel=cancel, on_event=on_event)

    def close(self) -> None:
        """Stop the worker and free the model."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.backend.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["AnalyzeRequest", "Engine", "Result", "Timings"]
