"""Runs each model or ladder over a labelled set as a store job, so work done before is answered from the cache."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from loupe.api import AnalyzeRequest, Engine
from loupe.batch import BatchRunner, ItemOutcome, open_job
from loupe.core.errors import LoupeError
from loupe.core.images.load import LoadedImage, load_image
from loupe.core.tasks import Task
from loupe.core.types import Result
from loupe.escalate.base import StepRunner
from loupe.escalate.config import policy_from_dict
from loupe.escalate.hybrid import DisabledCloud, LocalRunner
from loupe.escalate.policy import Escalation, Ledger, escalate
from loupe.eval.labelled import LabelledItem, LabelledSet
from loupe.store.sqlite import Store


@dataclass(frozen=True)
class System:
    """What is evaluated: one model, or a ladder of `model@detail` rungs (`local` means the first --model)."""

    name: str
    model: str = ""
    ladder: tuple[str, ...] = ()

    @classmethod
    def of_model(cls, model: str) -> System:
        """A single model."""
        return cls(model, model)

    @classmethod
    def of_ladder(cls, text: str, local: str) -> System:
        """`a@low,b@high` (commas or `>` between rungs)."""
        steps = tuple(s.strip() for s in text.replace(">", ",").split(",") if s.strip())
        if not steps:
            raise LoupeError(f"empty ladder {text!r}; write rungs like tiny@low,big@high")
        return cls("ladder " + " > ".join(steps), local, steps)

    def models(self) -> list[str]:
        """Every model this system may load."""
        if not self.ladder:
            return [self.model]
        names = [s.partition("@")[0] for s in self.ladder]
        return list(dict.fromkeys(self.model if n == "local" else n for n in names if n != "cloud"))


@dataclass(frozen=True)
class Prediction:
    """One labelled image as the system answered it."""

    item: LabelledItem
    result: Result
    steps: tuple[dict[str, Any], ...] = ()
    cached: bool = False


class ModelPool:
    """Engines by model name, loaded on first use (a run answered from the store loads nothing)."""

    def __init__(self, open_engine: Callable[[str], Engine]) -> None:
        self._open = open_engine
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Engine:
        """The engine for `name`, loading it now if needed."""
        with self._lock:
            if name not in self._engines:
                self._engines[name] = self._open(name)
            return self._engines[name]

    @property
    def loaded(self) -> list[str]:
        """Models loaded so far."""
        return list(self._engines)

    def close(self) -> None:
        """Free every loaded model."""
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


@dataclass
class TokenTap:
    """A rung's runner that also notes each result's token counts (the ladder's step records carry none)."""

    inner: StepRunner
    seen: list[dict[str, int]]

    @property
    def cloud(self) -> bool:
        """Whether the wrapped rung is a cloud one."""
        return self.inner.cloud

    @property
    def model(self) -> str:
        """The wrapped rung's model."""
        return self.inner.model

    def run(
        self, task: Task, images: Sequence[LoadedImage], *, cancel: threading.Event | None = None
    ) -> tuple[Result, float, int]:
        """Run the rung and note its tokens."""
        result, cost, calls = self.inner.run(task, images, cancel=cancel)
        self.seen.append(asdict(result.tokens))
        return result, cost, calls

    def estimate(self, task: Task, images: Sequence[LoadedImage]) -> float:
        """The wrapped rung's estimate."""
        return self.inner.estimate(task, images)


@dataclass(frozen=True)
class MeasuredEscalation(Escalation):
    """An Escalation whose stored step records also hold each rung's tokens."""

    tokens: tuple[dict[str, int], ...] = ()

    def records(self) -> list[dict[str, Any]]:
        """The ladder's records, with `tokens` on every rung that ran (in order)."""
        out = super().records()
        ran = iter(self.tokens)
        for r in out:
            if r.get("outcome") in ("accepted", "escalated"):
                r["tokens"] = next(ran, None)
        return out


def _ladder_analyze(system: System, task: Task, pool: ModelPool) -> Callable[[str, Task], Result | Escalation]:
    raw = dict(task.escalation or {})
    raw.update(ladder=list(system.ladder), cloud=False)  # an evaluation never sends images anywhere
    # rungs name models; the policy knows named local rungs only through its `models` table (runners below)
    raw["models"] = {
        **(raw.get("models") or {}),
        **{n: {"model": n} for n in system.models() if n not in ("local", "cloud")},
    }
    policy = policy_from_dict(raw, task.source)
    seen: list[dict[str, int]] = []
    runners: dict[str, StepRunner] = {"cloud": DisabledCloud()}
    for name in [system.model, *system.models()]:
        runners[name] = TokenTap(LocalRunner(lambda n=name: pool.get(n)), seen)
    runners["local"] = runners[system.model]
    ledger = Ledger(policy.budget)

    def analyze(path: str, t: Task) -> Result | Escalation:
        try:
            images = [load_image(path)]
        except LoupeError:
            return pool.get(system.model).analyze(AnalyzeRequest((path,), t))
        seen.clear()
        esc = escalate(t, images, policy, runners, ledger)
        return MeasuredEscalation(esc.result, esc.steps, esc.review, esc.review_reason, tuple(seen))

    return analyze


def run_system(
    store: Store,
    labelled: LabelledSet,
    task: Task,
    system: System,
    pool: ModelPool,
    settings_of: Callable[[str], dict[str, Any]],
    *,
    stop: threading.Event | None = None,
    on_item: Callable[[ItemOutcome], None] | None = None,
) -> list[Prediction]:
    """Every labelled image through `system`, recorded as a store job; cached results are reused.

    `settings_of(model)` is what keys a model's cache (the same as `loupe batch` records, so its runs are reused).
    """
    paths = [str(i.image) for i in labelled.items]
    if system.ladder:
        settings = {
            "eval_ladder": list(system.ladder),
            "models": {m: settings_of(m) for m in system.models()},
            "escalation": task.escalation or {},
        }
        analyze: Callable[[str, Task], Result | Escalation] = _ladder_analyze(system, task, pool)
    else:
        settings = settings_of(system.model)

        def analyze(path: str, t: Task) -> Result | Escalation:
            return pool.get(system.model).analyze(AnalyzeRequest((path,), t))

    job, _ = open_job(
        store,
        inputs=sorted(set(paths)),
        paths=paths,
        task=task,
        model=system.name,
        settings=settings,
        launch={"eval": labelled.source},
    )
    BatchRunner(store, analyze).run(job.id, stop=stop, on_item=on_item)
    stored = {s.path: s for s in store.results(job.id)}
    out = []
    for item in labelled.items:
        s = stored.get(str(item.image))
        if s is None:  # stopped before this image
            continue
        result = s.result
        if s.cached_from is not None:
            result = replace(result, timings=replace(result.timings, load_ms=0.0))
        out.append(
            Prediction(item, result, tuple(x for x in s.escalation if isinstance(x, dict)), s.cached_from is not None)
        )
    return out
