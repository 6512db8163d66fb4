"""Adapts an Engine (local or cloud backend) to the ladder's StepRunner: result, spend and request count."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from loupe.api import AnalyzeRequest, Engine
from loupe.core.images.load import LoadedImage
from loupe.core.images.resize import max_side_for
from loupe.core.tasks import Task
from loupe.core.types import Result
from loupe.escalate.audit import StoreAudit

CHARS_PER_TOKEN = 4
TOKENS_PER_TILE, TILE = 170, 512  # OpenAI-style image pricing: ~170 tokens per 512 px tile, +85


@dataclass
class EngineRunner:
    """One rung's model. For a cloud backend, spend is read from its `calls` and confidences are dropped."""

    engine: Engine
    cloud: bool = False
    audit: StoreAudit | None = None

    @property
    def model(self) -> str:
        """The model this rung runs."""
        return self.engine.model

    def run(
        self, task: Task, images: Sequence[LoadedImage], *, cancel: threading.Event | None = None
    ) -> tuple[Result, float, int]:
        """Analyze once; (result, USD spent, requests sent)."""
        calls = getattr(self.engine.backend, "calls", None)
        before = len(calls) if calls is not None else 0
        if self.audit is not None:
            self.audit.sources = tuple(i.sha256 for i in images)
        result = self.engine.analyze(AnalyzeRequest(tuple(images), task), cancel=cancel)
        new = calls[before:] if calls is not None else []
        if not self.engine.backend.capabilities.token_confidence:
            # no token probabilities came back: leave confidence unknown rather than a made-up 1.0
            result = replace(result, confidence={}, boxes=tuple(replace(b, confidence=None) for b in result.boxes))
        return result, sum(c.cost_usd for c in new), len(new)

    def estimate(self, task: Task, images: Sequence[LoadedImage]) -> float:
        """Expected USD of one run: prompt text + image tiles in, max_tokens out, at the backend's prices."""
        config = getattr(self.engine.backend, "config", None)
        if not self.cloud or config is None:
            return 0.0
        side = min(config.max_side, max_side_for(task.options.detail))
        tiles = sum(-(-min(side, i.size[0]) // TILE) * -(-min(side, i.size[1]) // TILE) for i in images)
        prompt = (len(task.instructions) + len(str(task.schema))) // CHARS_PER_TOKEN + 85 + TOKENS_PER_TILE * tiles
        return float(config.cost(prompt, task.options.max_tokens))
