"""The numbers of an evaluation, per system: field metrics, calibration, latency, tokens, cost, ladder steps, fit."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from loupe.core.tasks import Task
from loupe.core.types import Status
from loupe.eval.calibration import coverage_curve, ece, reliability
from loupe.eval.metrics import ItemScore, Sample, Scoring, aggregate, record_accuracy, schema_enums, score_item
from loupe.eval.runner import Prediction
from loupe.eval.thresholds import fit

RECORD = "(whole record)"


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def score_predictions(preds: Sequence[Prediction], scoring: Scoring) -> list[ItemScore]:
    """Each prediction scored against its label (no data for a failed analysis)."""
    return [
        score_item(p.item.data, p.result.data, p.result.confidence, scoring, answered=p.result.status is Status.OK)
        for p in preds
    ]


def _steps(preds: Sequence[Prediction]) -> list[dict[str, Any]]:
    by: dict[str, dict[str, Any]] = {}
    ms: dict[str, list[float]] = defaultdict(list)
    tokens: dict[str, list[dict[str, int]]] = defaultdict(list)
    for p in preds:
        for s in p.steps:
            if "runner" not in s:
                continue  # the review verdict
            row = by.setdefault(
                s["step"],
                {
                    "step": s["step"],
                    "model": s.get("model", ""),
                    "runs": 0,
                    "accepted": 0,
                    "escalated": 0,
                    "skipped": 0,
                    "cost_usd": 0.0,
                },
            )
            row[s.get("outcome", "skipped")] = row.get(s.get("outcome", "skipped"), 0) + 1
            if s.get("outcome") != "skipped":
                row["runs"] += 1
                ms[s["step"]].append(float(s.get("ms", 0.0)))
                if isinstance(s.get("tokens"), dict):
                    tokens[s["step"]].append(s["tokens"])
                row["cost_usd"] += float(s.get("cost_usd", 0.0))
    n = len(preds) or 1
    for name, row in by.items():
        times = ms[name]
        toks = tokens[name]
        row.update(
            mean_ms=statistics.fmean(times) if times else None,
            p95_ms=_pct(times, 0.95),
            cost_per_image_usd=row["cost_usd"] / n,
            share_of_images=row["runs"] / n,
            tokens_per_run={
                k: statistics.fmean(t.get(k, 0) for t in toks) if toks else None
                for k in ("prompt", "image", "completion")
            },
        )
    return list(by.values())


def calibration_of(samples: Sequence[Sample]) -> dict[str, Any]:
    """ECE, reliability bins and the accuracy-coverage curve of one field."""
    return {
        "n": len(samples),
        "with_confidence": sum(s.confidence is not None for s in samples),
        "ece": ece(samples),
        "bins": [asdict(b) for b in reliability(samples)],
        "coverage": [asdict(p) for p in coverage_curve(samples)],
    }


def summarize(
    task: Task, name: str, preds: Sequence[Prediction], scoring: Scoring | None = None, target: float | None = None
) -> dict[str, Any]:
    """Everything the report shows for one system, JSON-ready."""
    scoring = scoring or Scoring()
    items = score_predictions(preds, scoring)
    by_field: dict[str, list[Sample]] = defaultdict(list)
    for it in items:
        for s in it.samples:
            by_field[s.field].append(s)
    record = [
        Sample(RECORD, it.record_correct, p.result.min_confidence if p.result.status is Status.OK else None)
        for it, p in zip(items, preds, strict=True)
    ]
    totals = [p.result.timings.total_ms for p in preds if p.result.timings.total_ms > 0]  # cached: as first measured
    statuses: dict[str, int] = defaultdict(int)
    for p in preds:
        statuses[p.result.status.value] += 1
    out: dict[str, Any] = {
        "system": name,
        "images": len(preds),
        "cached": sum(p.cached for p in preds),
        "statuses": dict(statuses),
        "record_accuracy": record_accuracy(items),
        "fields": [asdict(m) for m in aggregate(items, schema_enums(task.schema))],
        "calibration": {f: calibration_of(ss) for f, ss in sorted(by_field.items())} | {RECORD: calibration_of(record)},
        "latency_ms": {
            "mean": statistics.fmean(totals) if totals else None,
            "p50": _pct(totals, 0.5),
            "p95": _pct(totals, 0.95),
            "measured": len(totals),
        },
        "tokens_per_image": {
            k: statistics.fmean(getattr(p.result.tokens, k) for p in preds) if preds else None
            for k in ("prompt", "image", "completion")
        },
        "cost_per_image_usd": sum(float(s.get("cost_usd", 0.0)) for p in preds for s in p.steps) / (len(preds) or 1),
        "steps": _steps(preds),
    }
    if target is not None:
        f = fit(items, target)
        climb = out["steps"][1] if len(out["steps"]) > 1 else None  # what one escalation costs: the next rung
        out["fit"] = {
            "target": f.target,
            "escalation_rate": f.escalation_rate,
            "escalated_ms_per_image": None
            if climb is None or climb["mean_ms"] is None
            else f.escalation_rate * climb["mean_ms"],
            "escalated_usd_per_image": None
            if climb is None or not climb["runs"]
            else f.escalation_rate * climb["cost_usd"] / climb["runs"],
            "accepted_record_accuracy": f.accepted_record_accuracy,
            "fields": [asdict(x) for x in f.fields],
            "pointers": f.pointers([p.result.confidence for p in preds], task.schema),
        }
    return out
