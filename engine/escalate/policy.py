"""The escalation ladder: try the cheap step first, climb only for doubtful results, within a budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from loupe.core.images.load import LoadedImage
from loupe.core.tasks import Task
from loupe.core.types import Result, Status
from loupe.core.verdict import resolve
from loupe.escalate.base import StepRunner
from loupe.escalate.crop import regions, run_crops

ALWAYS_ESCALATE = frozenset({Status.INVALID, Status.TRUNCATED, Status.REFUSED, Status.ERROR})
HOUR, DAY = 3600.0, 86400.0


@dataclass(frozen=True)
class Step:
    """One rung: which runner (a key of the runners table: "local", "local-4b", "cloud"...) at which detail."""

    runner: str
    detail: str | int = "low"
    crop: bool = False  # run on a crop of each box region the previous step found (at `detail`, i.e. high)

    @property
    def label(self) -> str:
        """`runner@detail` (or `runner@crop`), as the ladder is written in settings."""
        return f"{self.runner}@{'crop' if self.crop else self.detail}"

    @classmethod
    def parse(cls, text: str) -> Step:
        """`local@high`, `cloud` (detail low), `local@768` (pixels), `local-4b@crop` (box regions, high detail)."""
        runner, _, detail = text.partition("@")
        if detail == "crop":
            return cls(runner, "high", crop=True)
        return cls(runner, int(detail) if detail.isdigit() else (detail or "low"))


def is_wildcard(key: str) -> bool:
    """Whether a threshold key has a `*` segment (one array item, any index)."""
    return "*" in key.split("/")


@dataclass(frozen=True)
class Thresholds:
    """When a result is doubtful: its status, its lowest confidence, or one field's confidence.

    `fields` keys are JSON Pointers into the result; a `*` segment stands for every item of a list
    (`/defects/*/severity`), however many the image has. For one pointer a concrete key (`/defects/0/severity`)
    beats every wildcard key; where only wildcard keys match, the highest of their thresholds applies.
    """

    overall: float | None = 0.5
    fields: Mapping[str, float] = field(default_factory=dict)
    always: frozenset[Status] = ALWAYS_ESCALATE

    def doubt(self, result: Result) -> str | None:
        """Why `result` should go up the ladder, or None when it is good enough.

        Results without token confidences (cloud answers) are judged on their status alone.
        """
        if result.status in self.always:
            return f"status {result.status.value}" + (f": {result.error}" if result.error else "")
        if not result.confidence:
            return None
        low = result.min_confidence
        if self.overall is not None and low is not None and low < self.overall:
            return f"lowest confidence {low:.2f} < {self.overall:.2f}"
        for pointer, (need, key) in self.limits(result).items():
            got = result.confidence.get(pointer)
            if got is not None and got < need:
                return f"{pointer} confidence {got:.2f} < {need:.2f}" + ("" if key == pointer else f" ({key})")
        return None

    def limits(self, result: Result) -> dict[str, tuple[float, str]]:
        """Each concrete pointer of `result` that a key names: (its threshold, the key it came from)."""
        out: dict[str, tuple[float, str]] = {}
        for key, need in self.fields.items():
            if is_wildcard(key):
                for pointer, _ in resolve(result.data, key):
                    if pointer not in out or need > out[pointer][0]:
                        out[pointer] = (need, key)
        out.update((key, (need, key)) for key, need in self.fields.items() if not is_wildcard(key))
        return out


@dataclass(frozen=True)
class Budget:
    """Caps on cloud use; None means no cap. Spend is estimated in USD from the configured prices."""

    max_calls_per_job: int | None = None
    max_calls_per_hour: int | None = None
    max_calls_per_day: int | None = None
    max_spend_per_job: float | None = None
    max_spend_per_hour: float | None = None
    max_spend_per_day: float | None = None


class Ledger:
    """What one job has spent, plus earlier spend (from the audit table) for the hour and day windows."""

    def __init__(
        self, budget: Budget, *, clock: Callable[[], float] = time.time, history: Sequence[tuple[float, float]] = ()
    ) -> None:
        self.budget = budget
        self.clock = clock
        self.history: list[tuple[float, float]] = list(history)  # (epoch seconds, USD) per call, earlier jobs
        self.job: list[tuple[float, float]] = []

    def _window(self, seconds: float) -> list[tuple[float, float]]:
        start = self.clock() - seconds
        return [c for c in self.history + self.job if c[0] >= start]

    def refusal(self, estimate: float) -> str | None:
        """Why one more call estimated at `estimate` USD is not allowed, or None when it is."""
        b = self.budget
        windows = (
            ("job", self.job, b.max_calls_per_job, b.max_spend_per_job),
            ("hour", self._window(HOUR), b.max_calls_per_hour, b.max_spend_per_hour),
            ("day", self._window(DAY), b.max_calls_per_day, b.max_spend_per_day),
        )
        for name, calls, max_calls, max_spend in windows:
            if max_calls is not None and len(calls) + 1 > max_calls:
                return f"at most {max_calls} cloud calls per {name}, {len(calls)} made"
            spent = sum(c[1] for c in calls)
            if max_spend is not None and spent + estimate > max_spend:
                return f"at most ${max_spend:.4f} per {name}; ${spent:.4f} spent, next call ~${estimate:.4f}"
        return None

    def charge(self, cost: float, calls: int = 1) -> None:
        """Record `calls` requests costing `cost` USD in all (spread evenly)."""
        now = self.clock()
        for _ in range(max(calls, 1)):
            self.job.append((now, cost / max(calls, 1)))

    @property
    def spent(self) -> float:
        """USD this job has spent."""
        return sum(c[1] for c in self.job)


@dataclass(frozen=True)
class StepRecord:
    """One rung as taken (or skipped): what, why, with what outcome, at what cost and time."""

    step: str
    runner: str
    model: str
    why: str  # why this rung was tried ("first step" or the doubt about the previous result)
    outcome: str  # accepted | escalated | skipped
    status: str | None = None
    min_confidence: float | None = None
    cost_usd: float = 0.0
    calls: int = 0
    ms: float = 0.0
    note: str | None = None  # why it was skipped, or the error
    crops: tuple[dict[str, Any], ...] | None = None  # crop rungs: each region's window and scale (crop -> original)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the store's `escalation` column (`crops` only on crop rungs)."""
        out = asdict(self)
        if self.crops is None:
            del out["crops"]
        else:
            out["crops"] = [dict(c) for c in self.crops]
        return out


@dataclass(frozen=True)
class Escalation:
    """The answer kept, every rung taken, and whether (and why) a person should look at it."""

    result: Result
    steps: tuple[StepRecord, ...]
    review: bool = False
    review_reason: str | None = None

    @property
    def cost_usd(self) -> float:
        """Total estimated spend of all rungs."""
        return round(sum(s.cost_usd for s in self.steps), 8)

    def records(self) -> list[dict[str, Any]]:
        """Every rung, then the review verdict if any, as stored in the results' `escalation` column."""
        out = [s.to_dict() for s in self.steps]
        if self.review:
            out.append({"step": "review", "why": self.review_reason})
        return out


@dataclass(frozen=True)
class Policy:
    """Per task: the ladder, when to climb it, the budget, and whether cloud rungs may run at all."""

    ladder: tuple[Step, ...]
    thresholds: Thresholds = Thresholds()
    budget: Budget = Budget()
    cloud_enabled: bool = False  # off by default: cloud rungs are skipped and nothing leaves the machine
    cloud_veto: str | None = None  # why cloud rungs may not run even though both switches are on (LOUPE_OFFLINE)
    models: Mapping[str, Any] = field(default_factory=dict)  # extra local rungs: name -> escalate.local.ModelSpec


def _skip(step: Step, runner: StepRunner | None, why: str, note: str) -> StepRecord:
    return StepRecord(step.label, step.runner, runner.model if runner else "", why, "skipped", note=note)


def escalate(
    task: Task,
    images: Sequence[LoadedImage],
    policy: Policy,
    runners: Mapping[str, StepRunner],
    ledger: Ledger,
    *,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Escalation:
    """Climb `policy.ladder` until a result is not doubtful; otherwise keep the best one and send it to review.

    The kept result is the newest `ok` one, else the first one (a failed cloud call never loses the local
    answer). Cloud rungs are skipped when the cloud is off for the task or the budget refuses them.
    """
    records: list[StepRecord] = []
    kept: Result | None = None
    last: Result | None = None  # the latest result, whose boxes a crop rung looks at
    why = "first step"
    blocked: str | None = None
    for step in policy.ladder:
        runner = runners.get(step.runner)
        if runner is None:
            records.append(_skip(step, None, why, f"no runner {step.runner!r} configured"))
            continue
        found = regions(last, images) if step.crop and last is not None else []
        if step.crop and not found:
            records.append(_skip(step, runner, why, "no box regions to crop in the previous result"))
            continue
        if runner.cloud:
            if not policy.cloud_enabled or policy.cloud_veto:
                blocked = policy.cloud_veto or "the cloud is not enabled for this task"
                records.append(_skip(step, runner, why, blocked))
                continue
            refusal = ledger.refusal(runner.estimate(task, [r.image for r in found] if found else images))
            if refusal is not None:
                blocked = f"budget spent: {refusal}"
                records.append(_skip(step, runner, why, blocked))
                continue
        t0 = clock()
        step_task = task.with_options(detail=step.detail)
        if found:
            assert last is not None
            result, cost, calls = run_crops(runner, step_task, last, found, cancel=cancel)
        else:
            result, cost, calls = runner.run(step_task, images, cancel=cancel)
        if runner.cloud:
            ledger.charge(cost, calls)
        doubt = policy.thresholds.doubt(result)
        records.append(
            StepRecord(
                step.label,
                step.runner,
                runner.model,
                why,
                "accepted" if doubt is None else "escalated",
                result.status.value,
                result.min_confidence,
                round(cost, 8),
                calls,
                round((clock() - t0) * 1000, 2),
                result.error,
                tuple(r.window.to_dict() for r in found) if found else None,
            )
        )
        last = result
        if kept is None or result.status is Status.OK:
            kept = result
        if doubt is None:
            return Escalation(result, tuple(records))
        why = doubt
        if cancel is not None and cancel.is_set():
            break
    if kept is None:
        raise ValueError("the ladder ran no step (every rung was skipped); it needs at least one local step")
    reason = blocked if blocked is not None else f"still doubtful after the last step: {why}"
    return Escalation(kept, tuple(records), review=True, review_reason=reason)
