"""`loupe eval`: models or ladders scored on a labelled set, with calibration, fitted thresholds and a report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from loupe.core.errors import InputError
from loupe.core.tasks import Task
from loupe.wiring import options

if TYPE_CHECKING:
    from loupe.api import Engine
    from loupe.eval.labelled import LabelledSet
    from loupe.eval.runner import System


class EvalUsageError(InputError):
    """A usage problem of `loupe eval`, reported as one line."""


def add_parsers(sub: Any) -> None:
    """Register `eval` on the `loupe` parser (loupe.cli imports this module at start-up: keep its imports light)."""
    from loupe.cli.common import declare, examples

    e = examples(
        sub.add_parser("eval", help="score models or ladders on your labelled images; calibration and thresholds"),
        "loupe eval labelled/                         # a folder from `loupe export --labelled`",
        "loupe eval labels.jsonl --model smolvlm-256m --model smolvlm-500m --out report/",
        "loupe eval coco.json --task-file my-task.yaml --fit-thresholds --write-task",
        "loupe eval labelled/ --ladder local@low,local@high --json",
    )
    e.add_argument(
        "labelled",
        metavar="LABELLED_SET",
        help="a folder from `loupe export --labelled`, a .jsonl of {image, data}, or a COCO .json",
    )
    g = e.add_mutually_exclusive_group()
    g.add_argument("--task", default=None, help="built-in task (default: the one the set was labelled with)")
    g.add_argument("--task-file", help="a task file (.json, .yaml, .toml)")
    e.add_argument("--model-path", help="a text-model GGUF file to evaluate (with --mmproj)")
    e.add_argument("--mmproj", help="the matching mmproj GGUF file")
    e.add_argument("--threads", type=int, default=None, metavar="N", help=options.THREADS_HELP)
    e.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="M",
        help="a model to evaluate (repeat for several; default: the catalog's default)",
    )
    e.add_argument(
        "--ladder",
        dest="ladders",
        action="append",
        default=[],
        metavar="L",
        help="a ladder to evaluate, rungs `model@detail` joined by commas (`local` is the first --model);"
        " the task's escalation thresholds decide when it climbs; nothing is sent to a cloud",
    )
    e.add_argument("--out", default="loupe-eval", help="report folder (default: ./loupe-eval)")
    e.add_argument("--kind", choices=["loupe", "jsonl", "coco"], help="the labelled set's kind (default: guessed)")
    e.add_argument("--normalise-strings", action="store_true", help="strings match ignoring case, accents, punctuation")
    e.add_argument("--abs-tol", type=float, default=0.0, help="a number within this absolute error is right")
    e.add_argument("--rel-tol", type=float, default=0.0, help="a number within this relative error is right")
    e.add_argument("--iou", type=float, default=0.5, help="IoU for a predicted box to match a labelled one")
    e.add_argument("--fit-thresholds", action="store_true", help="propose per-field confidence thresholds")
    e.add_argument("--target-accuracy", type=float, default=0.98, help="accuracy the thresholds aim for")
    e.add_argument(
        "--write-task",
        action="store_true",
        help="write the fitted thresholds (of the first system) into --task-file's escalation table;"
        " list fields as `*` patterns (/defects/*/severity), covering every item",
    )
    e.add_argument("--db", help="the results store whose cache is used (default: $LOUPE_DB, else loupe.db)")
    e.add_argument("--json", action="store_true", help="machine-readable output only")
    declare(e, outputs={"out": "dir"}, store="write")


def _task(args: argparse.Namespace, labelled: LabelledSet) -> Task:
    from loupe.cli.common import pick_task

    if args.task_file or args.task:
        return pick_task(args).task
    if len(labelled.tasks) == 1:
        return labelled.tasks[0]
    args.task = "defects"
    return pick_task(args).task


def _systems(args: argparse.Namespace) -> list[System]:
    from loupe.eval.runner import System

    if args.model_path or args.mmproj:
        if not (args.model_path and args.mmproj):
            raise EvalUsageError("--model-path and --mmproj go together")
        models = [Path(args.model_path).stem, *args.models]
    else:
        from loupe.models.catalog import load_catalog

        models = args.models or ([] if args.ladders else [load_catalog().default])
    local = models[0] if models else None
    if args.ladders and local is None:
        from loupe.models.catalog import load_catalog

        local = load_catalog().default
    systems = [System.of_model(m) for m in dict.fromkeys(models)]
    systems += [System.of_ladder(text, local or "") for text in args.ladders]
    return systems


def _model_ns(args: argparse.Namespace, name: str) -> argparse.Namespace:
    files = args.model_path and Path(args.model_path).stem == name
    return argparse.Namespace(
        model=name,
        model_path=args.model_path if files else None,
        mmproj=args.mmproj if files else None,
        threads=args.threads,
        pretty=True,
    )


def run_eval(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run `loupe eval`."""
    from loupe.api import Engine
    from loupe.cli.common import model_files, open_backend, open_store, pick_task
    from loupe.eval.evaluate import evaluate
    from loupe.eval.labelled import box_list_key, load_labelled
    from loupe.eval.metrics import Scoring
    from loupe.eval.runner import ModelPool
    from loupe.eval.thresholds import write_thresholds

    if args.write_task and not (args.fit_thresholds and args.task_file):
        raise EvalUsageError("--write-task needs --fit-thresholds and a --task-file to write into")
    if not 0 < args.target_accuracy <= 1:
        raise EvalUsageError("--target-accuracy is a share in (0, 1], e.g. 0.98")
    key = "objects"
    if args.task_file or args.task:
        key = box_list_key(pick_task(args).task.schema)
    labelled = load_labelled(args.labelled, kind=args.kind, list_key=key)
    task = _task(args, labelled)
    systems = _systems(args)

    def open_engine(name: str) -> Engine:
        backend, model = open_backend(_model_ns(args, name), err)
        return Engine(backend, model=model)

    def settings_of(name: str) -> dict[str, Any]:  # what `loupe batch` records, so its results are reused
        _, files = model_files(_model_ns(args, name))
        return {"backend": "llama_cpp", "model_files": [[f.name, f.stat().st_size] for f in files]}

    scoring = Scoring(args.normalise_strings, args.abs_tol, args.rel_tol, args.iou)
    pool = ModelPool(open_engine)
    say = (lambda text: None) if args.json else (lambda text: print(text, file=err))
    try:
        with open_store(args) as store:
            result = evaluate(
                store,
                labelled,
                task,
                systems,
                pool,
                settings_of,
                Path(args.out),
                scoring=scoring,
                target=args.target_accuracy if args.fit_thresholds else None,
                on_system=lambda name: say(f"evaluating {name} on {len(labelled.items)} images"),
            )
    finally:
        pool.close()
    doc = result.doc
    written, replaced = None, []
    if args.write_task:
        fitted = doc["systems"][0]["fit"]["pointers"]
        replaced = write_thresholds(args.task_file, fitted)
        written = args.task_file
    if args.json:
        out.write(
            json.dumps(
                {
                    "report": str(result.paths["html"]),
                    "json": str(result.paths["json"]),
                    "task_written": written,
                    "keys_replaced": replaced,
                    "systems": [_brief(s) for s in doc["systems"]],
                }
            )
            + "\n"
        )
        return 0
    for s in doc["systems"]:
        out.write(_line(s) + "\n")
    say(f"report: {result.paths['html']} (numbers in {result.paths['json']})")
    if written:
        say(
            f"wrote {len(doc['systems'][0]['fit']['pointers'])} field thresholds into {written}"
            + (f"; dropped the concrete keys their patterns now cover: {', '.join(replaced)}" if replaced else "")
        )
    return 0


def _brief(s: dict[str, Any]) -> dict[str, Any]:
    out = {k: s[k] for k in ("system", "images", "cached", "record_accuracy", "latency_ms", "cost_per_image_usd")}
    if "fit" in s:
        out["fit"] = {k: s["fit"][k] for k in ("target", "escalation_rate", "pointers")}
        out["fit"]["fields"] = {f["field"]: f["threshold"] for f in s["fit"]["fields"]}
    return out


def _line(s: dict[str, Any]) -> str:
    acc = s["record_accuracy"]
    mean = s["latency_ms"]["mean"]
    text = (
        f"{s['system']}: whole-record accuracy {'-' if acc is None else f'{acc:.1%}'} on {s['images']} images"
        f" ({s['cached']} from the store), {'-' if mean is None else f'{mean:.0f}'} ms/image"
    )
    worst = sorted((f for f in s["fields"] if f["accuracy"] is not None), key=lambda f: f["accuracy"])[:3]
    if worst:
        text += "; weakest " + ", ".join(f"{f['field']} {f['accuracy']:.0%}" for f in worst)
    for f in s["fields"]:
        if f["kind"] == "boxes":
            p, r, m = (f[k] for k in ("precision", "recall", "mean_iou"))
            text += (
                f"; {f['field']} precision {'-' if p is None else f'{p:.0%}'} recall "
                f"{'-' if r is None else f'{r:.0%}'} mean IoU {'-' if m is None else f'{m:.2f}'}"
            )
    if "fit" in s:
        text += (
            "\n  thresholds: "
            + ", ".join(
                f"{f['field']} {f['threshold']:.2f}" + ("" if f["reached"] else " (target not reached)")
                for f in s["fit"]["fields"]
            )
            + f"; escalation rate {s['fit']['escalation_rate']:.0%}"
        )
    return text
