"""Per-field confidence thresholds fitted to a target accuracy at the fewest escalations, and written into a task."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from loupe.core.errors import TaskError
from loupe.core.schema.pointers import pointer_problem
from loupe.eval.calibration import coverage_curve
from loupe.eval.metrics import ItemScore, Sample
from loupe.export.rows import atomic_open

UNREACHABLE = 1.0  # a field that never reaches the target escalates whenever it is below certainty


@dataclass(frozen=True)
class FieldThreshold:
    """The lowest threshold at which the accepted answers of one field are right often enough."""

    field: str
    threshold: float
    reached: bool  # False: no threshold reaches the target on this set
    coverage: float  # share of the field's answers accepted at this threshold
    accuracy: float | None  # accuracy of the accepted answers
    n: int


@dataclass(frozen=True)
class Fit:
    """Thresholds for every field, and what they mean for the whole set."""

    target: float
    fields: tuple[FieldThreshold, ...]
    escalation_rate: float  # share of images with at least one field below its threshold (or no confidence)
    accepted_record_accuracy: float | None  # whole-record accuracy of the images that are not escalated

    def pointers(self, confidences: Sequence[dict[str, float]], schema: Any = True) -> dict[str, float]:
        """Threshold keys for the task file: each field as a pattern (`/defects/*/severity`, a `*` for every list
        index) under which confidences were seen, so that list items beyond those in the set are covered too.

        A pattern the schema refuses (a numeric property name taken for a list index) stays a concrete pointer."""
        by_field = {f.field: f.threshold for f in self.fields}
        out: dict[str, float] = {}
        allowed: dict[str, bool] = {}
        for conf in confidences:
            for pointer in conf:
                pattern = pattern_of(pointer)
                if pattern not in allowed:
                    allowed[pattern] = pointer_problem(schema, pattern) is None
                key = pattern if allowed[pattern] else pointer
                for f, t in by_field.items():
                    if any(p == f or p.startswith(f + "/") for p in (pattern, pointer)):
                        out[key] = max(out.get(key, 0.0), t)
        return dict(sorted(out.items()))


def pattern_of(pointer: str) -> str:
    """A pointer with every list index as `*` (`/defects/2/box_2d/0` -> `/defects/*/box_2d/*`)."""
    return "/".join("*" if part.isdigit() else part for part in pointer.split("/"))


def fit_field(field: str, samples: Sequence[Sample], target: float) -> FieldThreshold:
    """The lowest confidence t such that the answers with confidence >= t are at least `target` right."""
    best = None
    for point in coverage_curve(samples):
        if point.accuracy >= target:
            best = point  # points go from the highest threshold down: keep the last (lowest) that reaches it
    if best is None:
        return FieldThreshold(field, UNREACHABLE, False, 0.0, None, len(samples))
    return FieldThreshold(field, round(best.threshold, 6), True, best.coverage, best.accuracy, len(samples))


def fit(items: Sequence[ItemScore], target: float) -> Fit:
    """Fit every field. Each field's accepted set shrinks as its threshold rises, so the lowest threshold per field
    also gives the fewest escalated images overall (the union of the per-field escalations)."""
    if not 0 < target <= 1:
        raise ValueError(f"target accuracy must be in (0, 1], got {target}")
    by_field: dict[str, list[Sample]] = defaultdict(list)
    for it in items:
        for s in it.samples:
            by_field[s.field].append(s)
    fields = tuple(fit_field(f, ss, target) for f, ss in sorted(by_field.items()))
    limits = {f.field: f.threshold for f in fields}
    escalated, kept_right, kept = 0, 0, 0
    for it in items:
        doubt = any(s.confidence is None or s.confidence < limits[s.field] for s in it.samples) or not it.samples
        if doubt:
            escalated += 1
        else:
            kept += 1
            kept_right += it.record_correct
    return Fit(target, fields, escalated / len(items) if items else 0.0, kept_right / kept if kept else None)


_LOADERS = {".json": json.loads, ".yaml": yaml.safe_load, ".yml": yaml.safe_load}


def write_thresholds(task_file: str | Path, thresholds: dict[str, float]) -> list[str]:
    """Put `thresholds` into the task file's `escalation.thresholds.fields` (other settings kept; YAML comments
    are not). The file is checked as a task again before it replaces the old one.

    Concrete keys a written pattern covers (`/defects/0/severity` under `/defects/*/severity`, as an earlier fit
    wrote them) are dropped, since they would beat the new value on their items; returns them."""
    path = Path(task_file)
    load = _LOADERS.get(path.suffix.lower())
    if load is None:
        raise TaskError(
            str(path),
            "thresholds can be written into .json or .yaml task files only; add them by hand: "
            + json.dumps({"escalation": {"thresholds": {"fields": thresholds}}}),
        )
    try:
        raw: Any = load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise TaskError(str(path), f"cannot read the task file: {exc}") from None
    if not isinstance(raw, dict):
        raise TaskError(str(path), "a task file is a table/object")
    esc = raw.setdefault("escalation", {})
    if not isinstance(esc, dict):
        raise TaskError(str(path), "escalation must be a table/object", "/escalation")
    th = esc.setdefault("thresholds", {})
    if not isinstance(th, dict):
        raise TaskError(str(path), "thresholds must be a table/object", "/escalation/thresholds")
    old = th.get("fields") or {}
    if not isinstance(old, dict):
        raise TaskError(str(path), "fields must be a table/object", "/escalation/thresholds/fields")
    replaced = [k for k in old if k not in thresholds and pattern_of(k) != k and pattern_of(k) in thresholds]
    th["fields"] = {**{k: v for k, v in old.items() if k not in replaced}, **thresholds}
    text = (
        json.dumps(raw, indent=2, ensure_ascii=False) + "\n"
        if path.suffix.lower() == ".json"
        else yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    )
    from loupe.core.tasks import task_from_dict
    from loupe.escalate.config import policy_from_dict

    task = task_from_dict(load(text), str(path), default_name=path.stem)
    policy_from_dict(task.escalation or {}, str(path))
    with atomic_open(path, encoding="utf-8") as f:
        f.write(text)
    return replaced
