"""The hybrid ladder over a cluster: workers run its first (local) rung, the driver climbs the rest.

One Escalator lives on the driver, so one budget and one ledger hold for the whole job however many workers answer;
its `local` rung returns what the worker found instead of running the model again (a later local rung at another
detail runs on the driver's own model, loaded only if one is needed).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from loupe.core.errors import LoupeError
from loupe.core.images.load import LoadedImage, load_image
from loupe.core.tasks import Task
from loupe.core.types import Result
from loupe.escalate.base import StepRunner
from loupe.escalate.hybrid import Escalator
from loupe.escalate.policy import Escalation, escalate
from loupe.models.catalog import ModelError


class LadderError(LoupeError):
    """A ladder the cluster cannot split between workers and driver."""


@dataclass
class WorkerAnswer:
    """The `local` rung for one item: the worker's result for the first rung's detail, else the driver's model."""

    result: Result
    detail: str | int
    fallback: StepRunner
    cloud: bool = False
    used: bool = False
    model: str = ""  # the local model's name: the worker's result says it (no model is loaded to know it)

    def __post_init__(self) -> None:
        self.model = self.model or self.result.model

    def run(
        self, task: Task, images: Sequence[LoadedImage], *, cancel: threading.Event | None = None
    ) -> tuple[Result, float, int]:
        """The worker's answer once (no spend), then the driver's local model for any other local rung."""
        if not self.used and task.options.detail == self.detail:
            self.used = True
            return self.result, 0.0, 0
        return self.fallback.run(task, images, cancel=cancel)

    def estimate(self, task: Task, images: Sequence[LoadedImage]) -> float:
        """Local runs cost nothing."""
        return 0.0


class DriverLadder:
    """Climbs the rest of the task's ladder on the driver for each row a worker sends back."""

    def __init__(self, escalator: Escalator) -> None:
        self.escalator = escalator
        first = escalator.policy.ladder[0] if escalator.policy.ladder else None
        if first is None or first.runner != "local" or first.crop:
            label = first.label if first is not None else "(empty)"
            raise LadderError(
                f"with --ray the ladder must start with the `local` rung (the model the workers hold), not {label}"
            )
        self.detail = first.detail

    def worker_task(self, task: Task) -> Task:
        """The task as workers run it: the ladder's first rung's detail."""
        return task.with_options(detail=self.detail)

    def climb(self, path: str, worker: Result, task: Task) -> Escalation:
        """The ladder for one item whose first rung a worker answered; the image is read here only to climb."""
        policy = self.escalator.policy
        images: list[LoadedImage] = []
        if policy.thresholds.doubt(worker) is not None:
            try:
                images = [load_image(path)]
            except (LoupeError, ModelError):  # as the local ladder does: an unreadable image is the local error
                return Escalation(worker, ())
        local = WorkerAnswer(worker, self.detail, self.escalator.runners["local"])
        runners: dict[str, StepRunner] = {**self.escalator.runners, "local": local}
        return escalate(task, images, policy, runners, self.escalator.ledger)

    def close(self) -> None:
        """Close the cloud client and extra local models."""
        self.escalator.close()
