"""The escalation ladder's one seam: what runs a rung (a local engine, another local model, the cloud)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from loupe.core.images.load import LoadedImage
from loupe.core.tasks import Task
from loupe.core.types import Result


class StepRunner(Protocol):
    """Runs one task on one kind of model; `cloud` runners are gated by the policy and the budget."""

    cloud: bool
    model: str

    def run(
        self, task: Task, images: Sequence[LoadedImage], *, cancel: threading.Event | None = None
    ) -> tuple[Result, float, int]:
        """(result, USD spent, requests sent) for `task` (its options carry the step's detail)."""

    def estimate(self, task: Task, images: Sequence[LoadedImage]) -> float:
        """USD one run is expected to cost (0 for local runners)."""
