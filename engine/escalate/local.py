"""Extra local rungs (`models: {local-4b: {model: gemma-3-4b}}`), each loaded once per job and closed with it.

They are loaded like every model (loupe.api.models.open_model), on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from loupe.api import Engine
from loupe.api.models import ModelSpec, open_backend
from loupe.api.pipeline import error_result
from loupe.core.images.load import LoadedImage
from loupe.core.tasks import Task
from loupe.core.types import Result
from loupe.escalate.runner import EngineRunner

BackendFactory = Callable[[ModelSpec], Any]


def registry_backend(spec: ModelSpec, *, threads: int | None = None) -> Any:
    """Load `spec` the way every model is loaded (loupe.api.models.open_backend), with this job's threads."""
    return open_backend(replace(spec, threads=threads)).backend


@dataclass
class ModelRunner:
    """A local rung on its own model: loaded on first use (a job that never climbs this far never loads it)."""

    spec: ModelSpec
    make: BackendFactory = registry_backend
    cloud: bool = False
    loads: int = 0
    _engine: Engine | None = field(default=None, repr=False)
    _failed: str | None = field(default=None, repr=False)

    @property
    def model(self) -> str:
        """The model's name (known without loading it)."""
        return self.spec.label

    def run(
        self, task: Task, images: Sequence[LoadedImage], *, cancel: threading.Event | None = None
    ) -> tuple[Result, float, int]:
        """Analyze on this model; a model that cannot be loaded gives an `error` result (the ladder goes on)."""
        if self._engine is None and self._failed is None:
            try:
                self._engine = Engine(self.make(self.spec), model=self.spec.label)
                self.loads += 1
            except Exception as exc:  # missing file, not installed, bad GGUF: said once, never retried per image
                self._failed = f"cannot load local model {self.spec.label!r}: {exc}"
        if self._engine is None:
            return (
                error_result(task, "llama_cpp", self.spec.label, self._failed or "", [i.path for i in images]),
                0.0,
                0,
            )
        return EngineRunner(self._engine).run(task, images, cancel=cancel)

    def estimate(self, task: Task, images: Sequence[LoadedImage]) -> float:
        """Local runs cost nothing."""
        return 0.0

    def close(self) -> None:
        """Free the model (the job is over)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None
