"""`loupe watch | kiosk | outbox`: the factory-floor commands (a source judged into the store, outputs to the line)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TextIO

from loupe.cli.common import CliError, declare, examples, open_backend, pick_task, store_path
from loupe.core.tasks import builtin_names
from loupe.floor.line import Line, LineEvents, LineOutcome, RecordingEvents
from loupe.floor.outputs.delivery import Delivery
from loupe.store import Store
from loupe.store.outbox import Outbox
from loupe.wiring import options
from loupe.wiring.line import LineSettingsError
from loupe.wiring.line import build_line as build


def line_args(sp: argparse.ArgumentParser, model_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """The arguments `loupe watch`, `loupe kiosk` and `loupe-kiosk` share (loupe.wiring.options.LINE)."""
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--task", default="defects", help=f"built-in task ({', '.join(builtin_names())})")
    g.add_argument("--task-file", help="a task file with schema, instructions and its verdict/outputs tables")
    model_args(sp)
    options.add(sp, options.LINE)


def add_parsers(sub: Any, model_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register watch, kiosk and outbox on the `loupe` parser."""
    w = examples(
        sub.add_parser("watch", help="judge images as they arrive in a folder or from a camera (PASS/FAIL/REVIEW)"),
        "loupe watch incoming/ --task-file line1.yaml",
        "loupe watch 0 --trigger --mqtt mqtt://broker/line1     # USB camera 0, a frame per trigger",
        "loupe watch rtsp://cam.local/stream --interval 2 --json",
        "loupe watch incoming/ --after mark --max 10",
    )
    w.add_argument(
        "source", metavar="DIR|CAMERA", help="a folder, a USB camera index, an rtsp:// or http:// URL, or a video file"
    )
    line_args(w, model_args)
    w.add_argument("--max", type=int, metavar="N", help="stop after N images (default: run until Ctrl-C)")
    w.add_argument("--json", action="store_true", help="one JSON line per image")
    declare(w, outputs={"frames": "dir"}, store="write")

    k = examples(
        sub.add_parser("kiosk", help="the fullscreen PASS/FAIL/REVIEW screen for a line (needs the desktop extra)"),
        "loupe kiosk --source incoming/ --task-file line1.yaml --pin 4711",
        "loupe kiosk --source 0 --trigger --windowed",
    )
    k.add_argument(
        "--source",
        required=True,
        metavar="DIR|CAMERA",
        help="a folder, a USB camera index, an rtsp:// or http:// URL, or a video file",
    )
    line_args(k, model_args)
    kiosk_args(k)
    declare(k, outputs={"frames": "dir", "screenshot": "file"}, store="write")

    o = examples(
        sub.add_parser("outbox", help="line outputs still owed (and sent, dropped) per sink"),
        "loupe outbox",
        "loupe outbox --db line1.db --json",
    )
    o.add_argument("--db", help="the results store (default: $LOUPE_DB, else loupe.db in the user data dir)")
    o.add_argument("--json", action="store_true", help="machine-readable output only")
    declare(o, store="read")


def kiosk_args(sp: argparse.ArgumentParser) -> None:
    """The kiosk's own arguments (loupe.wiring.options.KIOSK)."""
    options.add(sp, options.KIOSK)


def run_floor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run one of the floor commands."""
    return _COMMANDS[args.command](args, out, err)


# -- building a line ---------------------------------------------------------------------------------
def build_line(
    args: argparse.Namespace, err: TextIO, events: LineEvents, *, retry_model: bool = True, allow_missing: bool = False
) -> tuple[Line, Delivery | None]:
    """The Line (and its output delivery, if the task has outputs) that `watch` runs."""
    from loupe.api import Engine

    try:
        settings = options.line_settings(vars(args), pick_task(args))
    except LineSettingsError as exc:
        raise CliError(str(exc)) from None

    def load() -> Engine:
        backend, name = open_backend(args, err)
        return Engine(backend, model=name)

    name = options.model_name(options.model_spec(vars(args)))
    return build(settings, load, name, events, retry_model=retry_model, allow_missing=allow_missing)


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
            out.write(
                json.dumps(
                    {
                        "verdict": outcome.judgement.verdict.value,
                        "reason": outcome.judgement.reason,
                        "image": outcome.image,
                        "result_id": outcome.result_id,
                        "status": outcome.result.status.value,
                        "cached": outcome.cached,
                    }
                )
                + "\n"
            )
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
    """Open the kiosk window (the desktop extra's; the CLI is the one layer above the desktop)."""
    try:
        from loupe.desktop.kiosk.app import run
    except ImportError as exc:
        raise CliError(f"the kiosk needs the desktop extra (pip install 'loupe[desktop,floor]'): {exc}") from None
    return run(vars(args))


def cmd_outbox(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """What the line outputs still owe, per sink."""
    with Store(store_path(args)) as store:
        outbox = Outbox(store)
        counts = outbox.counts()
        pending = outbox.entries(state="pending")
    if args.json:
        out.write(
            json.dumps(
                {
                    "sinks": counts,
                    "pending": [
                        {
                            "id": e.id,
                            "sink": e.sink,
                            "destination": e.destination,
                            "attempts": e.attempts,
                            "last_error": e.last_error,
                        }
                        for e in pending
                    ],
                }
            )
            + "\n"
        )
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
