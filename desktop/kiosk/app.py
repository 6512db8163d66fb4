"""`loupe kiosk` / `loupe-kiosk`: build the line, restore the shift from the store, show the window fullscreen."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from loupe.desktop.kiosk.bridge import LineBridge, LineEventsAdapter
from loupe.desktop.kiosk.window import KioskWindow, shift_start
from loupe.floor.line import Line, recent
from loupe.floor.outputs.delivery import Delivery
from loupe.store import Store, default_db_path

DEFAULT_PIN = "0000"


def outputs_text(delivery: Delivery | None, store: Store) -> str:
    """One line for the status bar: what the outputs still owe and the last error."""
    if delivery is None:
        return "outputs: none"
    parts = []
    for h in delivery.health(store):
        state = f"DOWN ({h.last_error})" if h.last_error else "ok"
        parts.append(f"{h.name} {state}, {h.pending} queued" + (f", {h.dropped} dropped" if h.dropped else ""))
    return "outputs: " + "; ".join(parts)


def build(args: argparse.Namespace, bridge: LineBridge) -> tuple[KioskWindow, Line, Delivery | None, Store]:
    """The window and the line behind it (not started); the window shows the shift so far from the store."""
    from loupe.cli.floor import build_line

    # a share that is not mounted yet is waited for (shown in place), not refused
    line, delivery = build_line(args, sys.stderr, LineEventsAdapter(bridge), allow_missing=True)
    store = Store(args.db or default_db_path())
    job = line.open_job(store)
    began = shift_start(datetime.now(UTC), args.shift_hours).astimezone(UTC).isoformat(timespec="milliseconds")
    history, counts = recent(store, job, line.task, limit=args.last, since=began)

    def leave() -> None:
        line.stop()
        if delivery is not None:
            delivery.stop()

    window = KioskWindow(bridge, task=line.task.name, pin=args.pin or os.environ.get("LOUPE_KIOSK_PIN") or DEFAULT_PIN,
                         history=history, counts=counts, last_n=args.last, shift_hours=args.shift_hours,
                         outputs_health=lambda: outputs_text(delivery, store), on_leave=leave,
                         on_trigger=getattr(line.source, "trigger", None))
    return window, line, delivery, store


def run(args: argparse.Namespace) -> int:
    """Run the kiosk until the operator leaves with the PIN."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Loupe kiosk")
    bridge = LineBridge()
    window, line, delivery, store = build(args, bridge)
    if args.windowed or args.screenshot:
        window.resize(1600, 900)
        window.show()
    else:
        window.showFullScreen()
    if args.screenshot:
        def grab(*_: object) -> None:
            QTimer.singleShot(1500, lambda: (window.refresh_outputs(), window.grab().save(args.screenshot),
                                             setattr(window, "unlocked", True), window.close()))
        bridge.outcome.connect(grab)
    if delivery is not None:
        delivery.start()
    line.start()
    code = app.exec()
    line.stop()
    if delivery is not None:
        delivery.stop()
    store.close()
    return code


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """`loupe-kiosk`'s command line (the same as `loupe kiosk`)."""
    from loupe.cli.floor import kiosk_args, line_args

    p = argparse.ArgumentParser(prog="loupe-kiosk", description="Loupe's fullscreen PASS/FAIL/REVIEW line screen.")
    p.add_argument("--source", required=True, metavar="DIR|CAMERA")

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", default=None)
        sp.add_argument("--model-path")
        sp.add_argument("--mmproj")
        sp.add_argument("--threads", type=int, default=None)

    line_args(p, model_args)
    kiosk_args(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `loupe-kiosk` script."""
    from loupe.core.errors import LoupeError

    args = parse_args(argv)
    try:
        return run(args)
    except LoupeError as exc:
        print(f"loupe-kiosk: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["build", "main", "run"]
