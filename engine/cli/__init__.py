"""The `loupe` command: analyze images, run the demo, manage models and tasks."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO, TypeVar

from loupe import taskfile
from loupe.api.models import ModelSpec
from loupe.cli import eval as cli_eval
from loupe.cli.backends import add_backend_args
from loupe.cli.gui import add_parsers as add_gui_parsers  # the desktop app, reached by name
from loupe.cli.gui import run_gui
from loupe.cli.serve import cmd_serve
from loupe.core.errors import LoupeError
from loupe.core.images.files import IMAGE_EXTENSIONS, expand  # noqa: F401  (re-exported for CLI modules)
from loupe.core.tasks import builtin_names, builtin_task, load_task_file
from loupe.core.types import Result, Status
from loupe.taskfile import TaskFile
from loupe.wiring import options

SAMPLE = Path(__file__).parent.parent / "samples" / "scratched-panel.jpg"
T = TypeVar("T")


def offline() -> bool:
    """True when the user (or a test run) asked Loupe never to touch the network."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("LOUPE_OFFLINE", "HF_HUB_OFFLINE"))


class CliError(LoupeError):
    """A usage problem reported as one line."""


# -- helpers --------------------------------------------------------------------------------------
def pick_task(args: argparse.Namespace) -> TaskFile:
    """The task from --task-file or --task (default: defects), every section parsed, with CLI option overrides."""
    job = taskfile.load(args.task_file) if getattr(args, "task_file", None) else taskfile.builtin(args.task)
    changes: dict[str, Any] = {}
    if getattr(args, "max_tokens", None):
        changes["max_tokens"] = args.max_tokens
    if getattr(args, "detail", None):
        changes["detail"] = int(args.detail) if args.detail.isdigit() else args.detail
    return replace(job, task=job.task.with_options(**changes)) if changes else job


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The model options of a command (--model, --model-path/--mmproj, --backend, ...) as a ModelSpec."""
    return options.model_spec(vars(args))


def open_backend(args: argparse.Namespace, err: TextIO) -> tuple[Any, str]:
    """Load the model the command's options name (loupe.api.open_backend); directory models are downloaded here
    when missing (unless offline), with a progress bar."""
    from loupe.api.models import open_backend as open_spec

    def fetch(entry: Any, root: Path) -> Path:
        from loupe.cli.models import progress_bar
        from loupe.models.hf_fetch import fetch as hf_fetch

        return hf_fetch(entry, root, offline=offline(), progress=progress_bar(err, True))

    opened = open_spec(model_spec(args), fetch=fetch)
    if opened.synthetic and not getattr(args, "pretty", False):  # the demo has said so already
        print(f"note: {opened.name} is a synthetic model with random weights: its output is meaningless", file=err)
    for note in opened.notes:
        print(f"note: {note}", file=err)
    return opened.backend, opened.name


def short(result: Result) -> str:
    """One human line for a result."""
    path = ", ".join(i.path for i in result.images)
    if result.status is Status.OK:
        conf = result.min_confidence
        lowest = f", lowest confidence {conf:.2f}" if conf is not None else ""
        return f"{path}: ok ({result.timings.total_ms / 1000:.1f} s{lowest})"
    return f"{path}: {result.status.value}: {result.error}"


def pretty(result: Result) -> str:
    """A readable report of one result (what `loupe demo` shows)."""
    lines = [
        f"image   {', '.join(f'{i.path} ({i.width}x{i.height})' for i in result.images)}",
        f"model   {result.model} ({result.backend})",
        f"status  {result.status.value}",
    ]
    if result.error:
        lines.append(f"reason  {result.error}")
    if result.data is not None:
        text = json.dumps(result.data, indent=2, ensure_ascii=False)
        text = re.sub(r"\[\s+([-0-9.,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
        lines.append("data    " + text.replace("\n", "\n        "))
    if result.confidence:
        low = sorted(result.confidence.items(), key=lambda kv: kv[1])[:5]
        lines.append("lowest confidence  " + ", ".join(f"{p} {c:.2f}" for p, c in low))
    for b in result.boxes:
        lines.append(f"box     {b.label or '?'} {list(b.box_2d)} -> pixels {list(b.pixels)}")
    t = result.timings
    lines.append(
        f"time    {t.total_ms / 1000:.2f} s (load {t.load_ms:.0f} ms, image encode {t.encode_ms:.0f} ms, "
        f"prefill {t.prefill_ms:.0f} ms, decode {t.decode_ms:.0f} ms for {result.tokens.completion} tokens)"
    )
    return "\n".join(lines) + "\n"


# -- commands -------------------------------------------------------------------------------------
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
    from loupe.cli.hybrid import ladder_for, ladder_text

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
                from loupe.cli.models import progress_bar

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


def cmd_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to the models command set."""
    from loupe.cli.models import run_models

    return run_models(args, out, err)


def cmd_store(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to the results-store command set (batch, review, export)."""
    from loupe.cli.store import run_store

    return run_store(args, out, err)


def cmd_hybrid(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to the hybrid-mode commands (audit, cloud)."""
    from loupe.cli.hybrid import run_hybrid

    return run_hybrid(args, out, err)


def cmd_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to `loupe doctor` (llama.cpp's CPU features and weight buffers here)."""
    from loupe.cli.doctor import run_doctor

    return run_doctor(args, out, err)


def cmd_floor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to the factory-floor commands (watch, kiosk, outbox)."""
    from loupe.cli.floor import run_floor

    return run_floor(args, out, err)


COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "analyze": cmd_analyze,
    "demo": cmd_demo,
    "tasks": cmd_tasks,
    "models": cmd_models,
    "batch": cmd_store,
    "review": cmd_store,
    "export": cmd_store,
    "audit": cmd_hybrid,
    "cloud": cmd_hybrid,
    **dict.fromkeys(("watch", "kiosk", "outbox"), cmd_floor),
    "eval": cli_eval.run_eval,
    "gui": run_gui,
    "serve": cmd_serve,
    "doctor": cmd_doctor,
}


def parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    p = argparse.ArgumentParser(prog="loupe", description="Images in, schema-valid JSON out, on your machine.")
    p.add_argument("--version", action="version", version=f"loupe {importlib.metadata.version('loupe')}")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", default=None, help="catalog or imported model name (see `loupe models list`)")
        sp.add_argument("--model-path", help="a text-model GGUF file (with --mmproj)")
        sp.add_argument("--mmproj", help="the matching mmproj GGUF file")
        sp.add_argument(
            "--threads",
            type=int,
            default=None,
            help="CPU threads, fixed (default: one per physical core, fewer while others keep cores busy)",
        )
        add_backend_args(sp)

    a = sub.add_parser("analyze", help="analyze images or folders")
    a.add_argument("inputs", nargs="+", metavar="IMAGE|DIR")
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
    from loupe.cli.hybrid import add_escalate_args

    add_escalate_args(a, db=True)

    d = sub.add_parser("demo", help="run the main job on a bundled sample image")
    d.add_argument("--task", default="defects")
    d.add_argument("--model", default=None)
    d.add_argument("--threads", type=int, default=None)
    d.add_argument("--json", action="store_true")

    t = sub.add_parser("tasks", help="list or show tasks")
    t.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    t.add_argument("name", nargs="?", default="defects")
    t.add_argument("--json", action="store_true")

    m = sub.add_parser("models", help="list, pull, import or verify models")
    msub = m.add_subparsers(dest="action", required=True)
    ml = msub.add_parser("list")
    ml.add_argument("--json", action="store_true")
    mp = msub.add_parser("pull")
    mp.add_argument("name")
    mp.add_argument("--json", action="store_true")
    mi = msub.add_parser("import")
    mi.add_argument("text", metavar="TEXT.gguf")
    mi.add_argument("--mmproj", required=True, metavar="MMPROJ.gguf")
    mi.add_argument("--name")
    mi.add_argument("--copy", action="store_true", help="copy the files into Loupe's model folder")
    mi.add_argument("--json", action="store_true")
    mv = msub.add_parser("verify")
    mv.add_argument("name", nargs="?")
    mv.add_argument("--json", action="store_true")

    from loupe.cli.store import add_parsers

    add_parsers(sub, model_args)
    from loupe.cli.hybrid import add_parsers as add_hybrid_parsers

    add_hybrid_parsers(sub)
    from loupe.cli.floor import add_parsers as add_floor_parsers

    add_floor_parsers(sub, model_args)
    cli_eval.add_parsers(sub)
    add_gui_parsers(sub)
    from loupe.cli.serve import add_parsers as add_serve_parsers

    add_serve_parsers(sub, model_args)
    from loupe.cli.doctor import add_parsers as add_doctor_parsers

    add_doctor_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of the `loupe` console script; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = parser().parse_args(argv)
    from loupe.models.store import ModelError

    try:
        return COMMANDS[args.command](args, out, err)
    except (LoupeError, ModelError) as exc:
        if getattr(args, "json", False):
            out.write(json.dumps({"error": str(exc), "kind": type(exc).__name__}) + "\n")
        print(f"error: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
