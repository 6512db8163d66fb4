"""`loupe kiosk` / `loupe-kiosk`: build the line, restore the shift from the store, show the window fullscreen."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from loupe.api import open_model
from loupe.desktop.kiosk.bridge import LineBridge, LineEventsAdapter
from loupe.desktop.kiosk.window import KioskWindow, shift_start
from loupe.floor import Delivery, Line, recent
from loupe.store import Store
from loupe.wiring import build_line, options

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


def build(values: Mapping[str, Any], bridge: LineBridge) -> tuple[KioskWindow, Line, Delivery | None, Store]:
    """The window and the line behind it (not started); the window shows the shift so far from the store.
    `values`: the parsed LINE, KIOSK and MODEL options (loupe.wiring.options) and the source."""
    settings = options.line_settings(values, options.task_of(values))
    spec = options.model_spec(values)
    # a share that is not mounted yet is waited for (shown in place), not refused
    line, delivery = build_line(
        settings, lambda: open_model(spec), options.model_name(spec), LineEventsAdapter(bridge), allow_missing=True
    )
    store = Store(settings.db)
    job = line.open_job(store)
    began = shift_start(datetime.now(UTC), values["shift_hours"]).astimezone(UTC).isoformat(timespec="milliseconds")
    history, counts = recent(store, job, line.task, line.rules, limit=values["last"], since=began)

    def leave() -> None:
        line.stop()
        if delivery is not None:
            delivery.stop()

    pin = values.get("pin") or os.environ.get("LOUPE_KIOSK_PIN") or DEFAULT_PIN
    window = KioskWindow(
        bridge,
        task=line.task.name,
        pin=pin,
        history=history,
        counts=counts,
        last_n=values["last"],
        shift_hours=values["shift_hours"],
        outputs_health=lambda: outputs_text(delivery, store),
        on_leave=leave,
        on_trigger=getattr(line.source, "trigger", None),
    )
    return window, line, delivery, store


def run(values: Mapping[str, Any]) -> int:
    """Run the kiosk until the operator leaves with the PIN."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Loupe kiosk")
    bridge = LineBridge()
    window, line, delivery, store = build(values, bridge)
    screenshot = values.get("screenshot")
    if values.get("windowed") or screenshot:
        window.resize(1600, 900)
        window.show()
    else:
        window.showFullScreen()
    if screenshot:

        def grab(*_: object) -> None:
            QTimer.singleShot(
                1500,
                lambda: (
                    window.refresh_outputs(),
                    window.grab().save(screenshot),
                    setattr(window, "unlocked", True),
                    window.close(),
                ),
            )

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
    """`loupe-kiosk`'s command line (the same options as `loupe kiosk`: loupe.wiring.options)."""
    p = argparse.ArgumentParser(prog="loupe-kiosk", description="Loupe's fullscreen PASS/FAIL/REVIEW line screen.")
    p.add_argument("--source", required=True, metavar="DIR|CAMERA")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--task", default="defects", help="built-in task")
    g.add_argument("--task-file", help="a task file with schema, instructions and its verdict/outputs tables")
    options.add(p, options.MODEL)
    options.add(p, options.LINE)
    options.add(p, options.KIOSK)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `loupe-kiosk` script."""
    from loupe.core.errors import LoupeError

    args = parse_args(argv)
    try:
        return run(vars(args))
    except LoupeError as exc:
        print(f"loupe-kiosk: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["build", "main", "run"]
