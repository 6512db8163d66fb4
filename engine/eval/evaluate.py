"""One evaluation end to end: run every system over the labelled set, sum up the numbers, write the report."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loupe.core.tasks import Task
from loupe.eval.labelled import LabelledSet
from loupe.eval.metrics import Scoring
from loupe.eval.runner import ModelPool, Prediction, System, run_system
from loupe.eval.summary import summarize
from loupe.store.records import now
from loupe.store.sqlite import Store


@dataclass(frozen=True)
class Evaluation:
    """The report's numbers, where it was written, and every prediction (for thresholds and the caller)."""

    doc: dict[str, Any]
    paths: dict[str, Path]
    predictions: dict[str, list[Prediction]]


def evaluate(
    store: Store,
    labelled: LabelledSet,
    task: Task,
    systems: Sequence[System],
    pool: ModelPool,
    settings_of: Callable[[str], dict[str, Any]],
    out_dir: Path,
    *,
    scoring: Scoring | None = None,
    target: float | None = None,
    stop: threading.Event | None = None,
    on_system: Callable[[str], None] | None = None,
) -> Evaluation:
    """Run, score and report; `target` also fits per-field thresholds for that accuracy."""
    from loupe.eval.report import write_report  # matplotlib is needed only from here on

    scoring = scoring or Scoring()
    predictions: dict[str, list[Prediction]] = {}
    for system in systems:
        if on_system is not None:
            on_system(system.name)
        predictions[system.name] = run_system(store, labelled, task, system, pool, settings_of, stop=stop)
    doc = {
        "task": task.name,
        "labelled_set": labelled.source,
        "labelled_kind": labelled.kind,
        "images": len(labelled.items),
        "created": now(),
        "scoring": {
            "normalise_strings": scoring.normalize_strings,
            "abs_tol": scoring.abs_tol,
            "rel_tol": scoring.rel_tol,
            "iou": scoring.iou,
        },
        "systems": [summarize(task, name, preds, scoring, target) for name, preds in predictions.items()],
    }
    return Evaluation(doc, write_report(doc, out_dir), predictions)


@dataclass
class Launcher:
    """What a client (the desktop app) calls on a worker thread: labelled set in, report folder out."""

    db_path: Path
    task: Task
    systems: Sequence[System]
    open_engine: Callable[[str], Any]  # model name -> Engine
    settings_of: Callable[[str], dict[str, Any]]
    out_dir: Path
    scoring: Scoring | None = None
    target: float | None = None

    def __call__(self, labelled_path: str, stop: threading.Event) -> Path:
        """Run the evaluation (stopping between images when `stop` is set); returns the folder of report.html."""
        from loupe.eval.labelled import box_list_key, load_labelled

        labelled = load_labelled(labelled_path, list_key=box_list_key(self.task.schema))
        pool = ModelPool(self.open_engine)
        try:
            with Store(self.db_path) as store:
                evaluate(
                    store,
                    labelled,
                    self.task,
                    self.systems,
                    pool,
                    self.settings_of,
                    self.out_dir,
                    scoring=self.scoring,
                    target=self.target,
                    stop=stop,
                )
        finally:
            pool.close()
        return self.out_dir
