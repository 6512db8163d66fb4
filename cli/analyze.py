"""`loupe analyze`, `loupe demo` and `loupe tasks`: images in, JSON lines out; the sample; the built-in tasks."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

from loupe.cli.common import (
    SAMPLE,
    CliError,
    declare,
    examples,
    expand,
    model_args,
    offline,
    open_backend,
    pick_task,
    pretty,
    progress_bar,
    short,
)
from loupe.cli.escalation import add_escalate_args, ladder_for, ladder_text
from loupe.core.tasks import builtin_names, builtin_task, load_task_file
from loupe.core.types import Status
from loupe.wiring import options

T = TypeVar("T")


def add_parsers(sub: Any) -> None:
    """Register analyze, demo and tasks on the `loupe` parser."""
    a = examples(
        sub.add_parser("analyze", help="analyze images or folders", description="Images in, one JSON line out each."),
        "loupe analyze photo.jpg",
        "loupe analyze photos/ --task receipt --out receipts.jsonl",
        "loupe analyze front.jpg back.jpg --together --task-file my-task.yaml",
        "loupe analyze photo.jpg --model smolvlm-500m --threads 4 --json",
    )
    a.add_argument("inputs", nargs="+", metavar="IMAGE|DIR", help="image files, or folders of them")
    g = a.add_mutually_exclusive_group()
    g.add_argument("--task", default="defects", help=f"built-in task ({', '.join(builtin_names())})")
    g.add_argument("--task-file", help="a task file (.json, .yaml, .toml) with schema and instructions")
    model_args(a)
    a.add_argument("--out", help="append JSON lines to this file instead of stdout")
    a.add_argument("--together", action="store_true", help="send all images in one request (ids img_01, ...)")
    a.add_argument("--max-tokens", type=int, help="override the task's max tokens")
    a.add_argument("--detail", help="image detail: low, high or a longest edge in pixels")
    a.add_argument("--json", action="store_true", help="machine-readable output only")
    a.add_argument(
        "--constraint",
        choices=["llguidance", "gbnf"],
        default="llguidance",
        help="decoding constraint engine (gbnf: llama.cpp's own, for comparison; slower, less exact)",
    )
    add_escalate_args(a, db=True)
    declare(a, outputs={"out": "file"}, store="write")

    d = examples(
        sub.add_parser("demo", help="run the main job on a bundled sample image"),
        "loupe demo",
        "loupe demo --task describe --model smolvlm-500m",
        "loupe demo --json",
    )
    d.add_argument("--task", default="defects", help=f"built-in task ({', '.join(builtin_names())}; default: defects)")
    model = next(kw for flag, kw in options.MODEL if flag == "--model")
    d.add_argument("--model", default=None, help=model["help"] + "; default: the catalog default, else synthetic")
    d.add_argument("--threads", type=int, default=None, metavar="N", help=options.THREADS_HELP)
    d.add_argument("--json", action="store_true", help="the result as one JSON line instead of the report")
    declare(d)

    t = examples(
        sub.add_parser("tasks", help="list or show tasks"),
        "loupe tasks",
        "loupe tasks show receipt",
        "loupe tasks show my-task.yaml",
    )
    t.add_argument("action", nargs="?", choices=["list", "show"], default="list", help="list (default) or show one")
    t.add_argument("name", nargs="?", default="defects", help="show: a built-in task or a task file (default: defects)")
    t.add_argument("--json", action="store_true", help="list: machine-readable output (show always prints JSON)")
    declare(t)


def cmd_analyze(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Analyze images; one JSON line per image (or per request with --together)."""
    from loupe.api import AnalyzeRequest, Engine

    job = pick_task(args)
    task = job.task
    for note in task.notes:
        print(f"note: task {task.name}: {note}", file=err)
    paths = list(expand(args.inputs))
    if not paths:
        raise CliError("no images found in " + " ".join(args.inputs))
    backend, name = open_backend(args, err)
    sink = open(args.out, "a", encoding="utf-8") if args.out else out  # noqa: SIM115
    groups = [paths] if args.together else [[p] for p in paths]
    failures = 0

    try:
        with Engine(backend, model=name) as engine, ladder_for(args, job, engine, err) as ladder:
            work = ladder or (lambda g: (engine.analyze(AnalyzeRequest(tuple(g), task)), None))
            for result, steps in _progress(groups, work, args, err):
                if getattr(args, "pretty", False) and not args.json:
                    sink.write(pretty(result) + ladder_text(steps))
                else:
                    line = result.to_dict() if steps is None else {**result.to_dict(), "escalation": steps}
                    sink.write(json.dumps(line, ensure_ascii=False) + "\n")
                sink.flush()
                if result.status is Status.ERROR:
                    failures += 1
                    if not args.json:
                        print(f"error: {result.error}", file=err)
                elif args.out and not args.json:
                    print(short(result), file=out)
    finally:
        if args.out:
            sink.close()
    return 1 if failures else 0


def _progress(
    groups: list[list[str]], work: Callable[[list[str]], T], args: argparse.Namespace, err: TextIO
) -> Iterator[T]:
    if args.json or len(groups) < 2 or not err.isatty():
        yield from (work(g) for g in groups)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=err)) as bar:
        job = bar.add_task("analyzing", total=len(groups))
        for g in groups:
            yield work(g)
            bar.advance(job)


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The main job on the bundled sample image with the default model (or the synthetic one)."""
    from loupe.models.catalog import ModelError, load_catalog
    from loupe.models.store import ModelNotInstalled, ModelStore, default_model_root

    store = ModelStore(default_model_root())
    model = args.model or load_catalog().default
    try:
        store.resolve(model)
    except ModelError as exc:
        problem = str(exc)
        if isinstance(exc, ModelNotInstalled) and not offline():
            print(f"{model} is not installed; downloading it (Ctrl-C to skip)...", file=err)
            try:
                store.pull(model, progress=progress_bar(err, not args.json))
                problem = ""
            except (ModelError, KeyboardInterrupt) as pull_exc:
                problem = f"cannot download {model}: {pull_exc or 'interrupted'}"
        if problem:
            print(f"note: {problem}", file=err)
            model = "synthetic-smolvlm"
            print(
                f"note: using {model}, a synthetic model with random weights: the output below is valid against "
                "the schema but its content is meaningless. For real answers run `loupe models pull "
                "smolvlm-256m`, or `loupe models import TEXT.gguf --mmproj MMPROJ.gguf`.",
                file=err,
            )
    ns = argparse.Namespace(
        inputs=[str(SAMPLE)],
        task=args.task,
        task_file=None,
        model=model,
        model_path=None,
        mmproj=None,
        out=None,
        json=args.json,
        together=False,
        max_tokens=None,
        detail=None,
        threads=args.threads,
        pretty=True,
        escalate=False,
    )
    return cmd_analyze(ns, out, err)


def cmd_tasks(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """List built-in tasks or show one (schema, instructions, options)."""
    if args.action == "show":
        task = load_task_file(args.name) if Path(args.name).suffix else builtin_task(args.name)
        doc = {
            "name": task.name,
            "instructions": task.instructions,
            "options": vars(task.options),
            "schema": task.schema,
        }
        out.write(json.dumps(doc, indent=2) + "\n")
        return 0
    tasks = [builtin_task(n) for n in builtin_names()]
    if args.json:
        out.write(json.dumps([{"name": t.name, "description": t.description} for t in tasks]) + "\n")
    else:
        for t in tasks:
            out.write(f"{t.name:10} {t.description}\n")
    return 0
