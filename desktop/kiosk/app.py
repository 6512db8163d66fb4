"""`loupe kiosk` / `loupe-kiosk`: build the line, restore the shift from the store, show the window fullscreen."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from loupe.api import Engine, ModelSpec, open_backend
from loupe.core.errors import LoupeError
from loupe.desktop.kiosk.bridge import LineBridge, LineEventsAdapter
from loupe.desktop.kiosk.window import KioskWindow, shift_start
from loupe.floor import Delivery, Line, recent
from loupe.store import Store
from loupe.wiring import build_line, options

NO_PIN = "the kiosk needs an operator PIN to leave it: give --pin or set LOUPE_KIOSK_PIN (there is no default)"


def operator_pin(values: Mapping[str, Any], env: Mapping[str, str] | None = None) -> str:
    """--pin, else $LOUPE_KIOSK_PIN; neither: refused in one line (a kiosk anyone leaves with 0000 is no kiosk)."""
    pin = values.get("pin") or (os.environ if env is None else env).get("LOUPE_KIOSK_PIN", "")
    if not pin.strip():
        raise LoupeError(NO_PIN)
    return str(pin)


def synthetic_file(spec: ModelSpec) -> bool:
    """Whether --model-path names a GGUF that loupe.models.synthetic built (random weights; its general.name says)."""
    if not spec.path.endswith(".gguf"):
        return False
    try:
        from gguf import GGUFReader

        field = GGUFReader(spec.path).get_field("general.name")
        return field is not None and str(field.contents()).startswith("loupe-synthetic")
    except Exception:  # unreadable here: the loader says what is wrong with the file
        return False


def loader(spec: ModelSpec, bridge: LineBridge) -> Callable[[], Engine]:
    """Load the model for the line (its worker thread); a synthetic model is told to the window as it loads."""

    def load() -> Engine:
        opened = open_backend(spec)
        if opened.synthetic or synthetic_file(spec):
            bridge.synthetic_model(opened.name)
        return Engine(opened.backend, model=opened.name)

    return load


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
    pin = operator_pin(values)
    settings = options.line_settings(values, options.task_of(values))
    spec = options.model_spec(values)
    # a share that is not mounted yet is waited for (shown in place), not refused
    line, delivery = build_line(
        settings, loader(spec, bridge), options.model_name(spec), LineEventsAdapter(bridge), allow_missing=True
    )
    store = Store(settings.db)
    job = line.open_job(store)
    began = shift_start(datetime.now(UTC), values["shift_hours"]).astimezone(UTC).isoformat(timespec="milliseconds")
    history, counts = recent(store, job, line.task, line.rules, limit=values["last"], since=began)

    def leave() -> None:
        line.stop()
        if delivery is not None:
            delivery.stop()

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
        schema=line.task.schema,
    )
    return window, line, delivery, store


def cover_screen(window: KioskWindow) -> None:
    """Fullscreen on the screen's whole geometry, with or without a window manager: without one (a kiosk box)
    `showFullScreen` alone leaves the window at its preferred size, so the geometry is set explicitly as well."""
    from PySide6.QtWidgets import QApplication

    screen = window.screen() or QApplication.primaryScreen()
    geometry = screen.geometry()
    window.setGeometry(geometry)
    window.showFullScreen()
    window.setGeometry(geometry)


def run(values: Mapping[str, Any]) -> int:
    """Run the kiosk until the operator leaves with the PIN."""
    from loupe.desktop.qt_libs import check_or_exit
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    operator_pin(values)  # refused before anything opens
    if QApplication.instance() is None:
        check_or_exit("loupe kiosk")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Loupe kiosk")
    bridge = LineBridge()
    window, line, delivery, store = build(values, bridge)
    screenshot = values.get("screenshot")
    if values.get("windowed"):
        window.resize(1600, 900)
        window.show()
    else:  # a screenshot shows the kiosk as the line sees it: the whole screen
        cover_screen(window)
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


__all__ = ["build", "cover_screen", "main", "operator_pin", "run"]
