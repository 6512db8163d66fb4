"""`loupe watch | kiosk | outbox`: the factory-floor commands (a source judged into the store, outputs to the line)."""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from loupe.cli import CliError, open_backend, pick_task
from loupe.core.errors import TaskError
from loupe.core.tasks import Task, builtin_names
from loupe.floor.line import Line, LineEvents, LineOutcome, RecordingEvents
from loupe.floor.outputs.config import OutputsConfig, build_sinks, outputs_from_dict
from loupe.floor.outputs.delivery import Delivery
from loupe.store import Store, default_db_path
from loupe.store.outbox import Outbox


def line_args(sp: argparse.ArgumentParser, model_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """The arguments `loupe watch`, `loupe kiosk` and `loupe-kiosk` share."""
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--task", default="defects", help=f"built-in task ({', '.join(builtin_names())})")
    g.add_argument("--task-file", help="a task file with schema, instructions and its verdict/outputs tables")
    model_args(sp)
    sp.add_argument("--db", help="the results store (default: $LOUPE_DB, else loupe.db in the user data dir)")
    sp.add_argument("--after", choices=["move", "mark"], default="move",
                    help="what happens to a judged file in a watched folder: move it to processed/ (default) or "
                         "leave it and write a hidden .NAME.loupe-done marker")
    sp.add_argument("--settle", type=float, default=1.0, metavar="S",
                    help="a file found without a close event is ready once unchanged this long (default 1 s)")
    sp.add_argument("--poll", action="store_true", help="poll the folder instead of inotify (network shares)")
    sp.add_argument("--interval", type=float, default=1.0, metavar="S", help="camera: seconds between grabs")
    sp.add_argument("--trigger", action="store_true",
                    help="camera: grab a frame only when triggered (in the kiosk: the space bar or a foot pedal)")
    sp.add_argument("--frames", metavar="DIR", help="camera: where grabbed frames are saved (default: beside the db)")
    sp.add_argument("--mqtt", metavar="URL", help="publish verdicts: mqtt://host[:port]/topic (adds to the task's)")
    sp.add_argument("--webhook", metavar="URL", help="POST verdicts as JSON to this URL (adds to the task's)")
    sp.add_argument("--drop", action="store_true", help="write each verdict as JSON next to its image")


def add_parsers(sub: Any, model_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register watch, kiosk and outbox on the `loupe` parser."""
    w = sub.add_parser("watch", help="judge images as they arrive in a folder or from a camera (PASS/FAIL/REVIEW)")
    w.add_argument("source", metavar="DIR|CAMERA", help="a folder, a USB camera index, an rtsp:// or http:// URL, "
                                                         "or a video file")
    line_args(w, model_args)
    w.add_argument("--max", type=int, metavar="N", help="stop after N images (default: run until Ctrl-C)")
    w.add_argument("--json", action="store_true", help="one JSON line per image")

    k = sub.add_parser("kiosk", help="the fullscreen PASS/FAIL/REVIEW screen for a line (needs the desktop extra)")
    k.add_argument("--source", required=True, metavar="DIR|CAMERA")
    line_args(k, model_args)
    kiosk_args(k)

    o = sub.add_parser("outbox", help="line outputs still owed (and sent, dropped) per sink")
    o.add_argument("--db", help="the results store")
    o.add_argument("--json", action="store_true")


def kiosk_args(sp: argparse.ArgumentParser) -> None:
    """The kiosk's own arguments."""
    sp.add_argument("--pin", default=None, help="operator PIN to leave (default: $LOUPE_KIOSK_PIN, else 0000)")
    sp.add_argument("--last", type=int, default=8, metavar="N", help="how many recent results to list")
    sp.add_argument("--shift-hours", type=float, default=8.0, help="shift length; counts reset each shift (from 06:00)")
    sp.add_argument("--windowed", action="store_true", help="a normal window instead of fullscreen")
    sp.add_argument("--screenshot", metavar="PNG", help="save the window after the first result, then quit")


def run_floor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run one of the floor commands."""
    return _COMMANDS[args.command](args, out, err)


# -- building a line ---------------------------------------------------------------------------------
def outputs_config(args: argparse.Namespace, task: Task) -> tuple[Task, OutputsConfig]:
    """The task's `outputs` table with --mqtt / --webhook / --drop added (checked like a task file's)."""
    raw: dict[str, Any] = dict(task.outputs or {})
    if getattr(args, "mqtt", None):
        from urllib.parse import urlsplit

        parts = urlsplit(args.mqtt)
        raw["mqtt"] = {"url": f"{parts.scheme}://{parts.netloc}", **(
            {"topic": parts.path.lstrip("/")} if parts.path.strip("/") else {})}
    if getattr(args, "webhook", None):
        raw["webhook"] = {"url": args.webhook}
    if getattr(args, "drop", False):
        raw["file"] = {}
    try:
        config = outputs_from_dict(raw, "command line")
    except TaskError as exc:
        raise CliError(f"outputs: {exc.problem}" + (f" at /outputs{exc.pointer}" if exc.pointer else "")) from None
    from dataclasses import replace

    return replace(task, outputs=raw or None), config


def model_name(args: argparse.Namespace) -> str:
    """The model's name as the job records it (without loading it)."""
    if args.model_path:
        return Path(args.model_path).stem
    if args.model:
        return str(args.model)
    from loupe.models.catalog import load_catalog

    return load_catalog().default


def build_line(args: argparse.Namespace, err: TextIO, events: LineEvents, *, retry_model: bool = True,
               allow_missing: bool = False) -> tuple[Line, Delivery | None]:
    """The Line (and its output delivery, if the task has outputs) that `watch` and the kiosk run."""
    from loupe.api import Engine
    from loupe.floor.sources import open_source

    task, config = outputs_config(args, pick_task(args))
    db = Path(args.db or default_db_path())
    frames = Path(args.frames) if args.frames else db.parent / "frames"
    source = open_source(args.source, frames_dir=frames, after=args.after, settle_s=args.settle, poll=args.poll,
                         interval_s=args.interval, trigger=getattr(args, "trigger", False), allow_missing=allow_missing)
    delivery = None
    if config.sinks:
        delivery = Delivery(db, build_sinks(config), max_backoff_s=config.max_backoff_s)

    def load() -> Engine:
        backend, name = open_backend(args, err)
        return Engine(backend, model=name)

    line = Line(source=source, task=task, db_path=db, load=load, model=model_name(args), events=events,
                delivery=delivery, retry_model=retry_model)
    return line, delivery


# -- commands ------------------------------------------------------------------------------------------
def cmd_watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Judge images from a folder or camera until Ctrl-C (or --max); one line per image."""
    from loupe.batch import stop_on_sigint

    seen: list[LineOutcome] = []
    failed: list[str] = []
    line_ref: list[Line] = []

    def show(outcome: LineOutcome) -> None:
        seen.append(outcome)
        if args.json:
            out.write(json.dumps({"verdict": outcome.judgement.verdict.value, "reason": outcome.judgement.reason,
                                  "image": outcome.image, "result_id": outcome.result_id,
                                  "status": outcome.result.status.value, "cached": outcome.cached}) + "\n")
        else:
            out.write(f"{outcome.judgement.verdict.value:6} {outcome.image}  ({outcome.judgement.reason})\n")
        out.flush()
        if args.max and len(seen) >= args.max:
            line_ref[0].stop_event.set()

    class Printing(RecordingEvents):
        def model_state(self, state: str, detail: str) -> None:
            if state == "failed":
                failed.append(detail)
            if state == "failed" or not args.json:
                print(f"model {state}: {detail}", file=err)

        def source_state(self, health: Any) -> None:
            if not args.json:
                print(f"source {health.state}: {health.detail}", file=err)

        def problem(self, message: str) -> None:
            print(f"problem: {message}", file=err)

    line, delivery = build_line(args, err, Printing(show), retry_model=False)
    line_ref.append(line)
    if delivery is not None:
        delivery.start()
    try:
        with stop_on_sigint(line.stop_event, lambda: print("stopping after this image...", file=err)):
            line.run()
    finally:
        if delivery is not None:
            store = Store(delivery.db_path)
            try:
                delivery.deliver_once(store)
            finally:
                store.close()
            delivery.stop()
    if failed:
        raise CliError(f"the model cannot be loaded: {failed[-1]}")
    return 0


def cmd_kiosk(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Open the kiosk window. The engine must never import the desktop package (import-linter forbids it), so the
    window is reached by name at run time, only when this command runs."""
    try:
        app = importlib.import_module("loupe.desktop.kiosk.app")
    except ImportError as exc:
        raise CliError(f"the kiosk needs the desktop extra (pip install 'loupe[desktop,floor]'): {exc}") from None
    return int(app.run(args))


def cmd_outbox(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """What the line outputs still owe, per sink."""
    with Store(args.db or default_db_path()) as store:
        outbox = Outbox(store)
        counts = outbox.counts()
        pending = outbox.entries(state="pending")
    if args.json:
        out.write(json.dumps({"sinks": counts, "pending": [
            {"id": e.id, "sink": e.sink, "destination": e.destination, "attempts": e.attempts,
             "last_error": e.last_error} for e in pending]}) + "\n")
        return 0
    if not counts:
        out.write("nothing queued\n")
    for sink, c in sorted(counts.items()):
        out.write(f"{sink:8} pending {c['pending']:5}  sent {c['sent']:6}  dropped {c['dropped']:4}\n")
    for e in pending[:10]:
        out.write(f"  #{e.id} {e.sink} -> {e.destination}: {e.attempts} attempt(s), {e.last_error or 'not tried'}\n")
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "watch": cmd_watch,
    "kiosk": cmd_kiosk,
    "outbox": cmd_outbox,
}

__all__ = ["add_parsers", "build_line", "kiosk_args", "line_args", "run_floor"]
