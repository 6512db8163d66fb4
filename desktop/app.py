"""`loupe gui` / `loupe-gui` / `loupe-app`: parse arguments, open the store, build the window, load the model."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loupe.desktop.runner import LoadedModel

if TYPE_CHECKING:
    from loupe.desktop.bridge import EngineBridge
    from loupe.desktop.main_window import MainWindow


def model_loader(
    model: str | None, model_path: str | None, mmproj: str | None, threads: int | None = None, model_dir: str = ""
) -> Callable[[], LoadedModel]:
    """A loader for the worker thread, choosing the model like the CLI (the default falls back to synthetic); MLX /
    ONNX catalog models load through the backend their format needs (loupe.desktop.loading)."""
    if bool(model_path) != bool(mmproj):
        raise SystemExit("loupe-app: --model-path and --mmproj go together")

    def load() -> LoadedModel:
        from loupe.api import ModelSpec
        from loupe.desktop.loading import load_spec

        return load_spec(
            ModelSpec(
                model=model or "",
                path=model_path or "",
                mmproj=mmproj or "",
                threads=threads,
                model_dir=model_dir,
                fallback=True,
            )
        )

    return load


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    from loupe.wiring import options

    p = argparse.ArgumentParser(prog="loupe gui", description="Loupe desktop app: drop images, get checked JSON.")
    p.add_argument("images", nargs="*", help="images or folders to queue at start")
    options.add(p, options.GUI)
    return p.parse_args(argv)


def _screenshot_when_ready(window: MainWindow, bridge: EngineBridge, path: str, *, wait_for_result: bool) -> None:
    """Save `window.grab()` once the first result's picture is shown (or the model is ready), then close."""
    from PySide6.QtCore import QTimer

    taken: list[bool] = []

    def grab_and_quit(*_: object) -> None:
        if not taken:
            taken.append(True)
            QTimer.singleShot(400, lambda: (window.grab().save(path), window.close()))

    (window.decoder.decoded if wait_for_result else bridge.modelLoaded).connect(grab_and_quit)
    bridge.modelFailed.connect(grab_and_quit)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the QApplication, the window and the worker; the window shows before the model has loaded."""
    import os

    from loupe.core.images.files import expand
    from loupe.desktop.bridge import EngineBridge
    from loupe.desktop.main_window import MainWindow
    from loupe.desktop.settings import load_settings
    from loupe.models import ModelStore, default_model_root
    from loupe.store import Store, default_db_path
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    args = parse_args(argv)
    if QApplication.instance() is None:  # Qt's X11 plugin aborts with its own words when libraries are missing
        from loupe.desktop.qt_libs import check_or_exit

        check_or_exit("loupe gui")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Loupe")
    qsettings = QSettings(args.settings, QSettings.Format.IniFormat) if args.settings else QSettings("Loupe", "Loupe")
    chosen = load_settings(qsettings)
    threads = args.threads or chosen.threads or None
    model_name = args.model or chosen.model or None

    def make_loader(name: str) -> Callable[[], LoadedModel]:
        """A model picked in the window, loaded with the settings as they are now (threads, model directory)."""
        now = window.app_settings
        return model_loader(name, None, None, args.threads or now.threads or None, now.model_dir)

    db = Path(args.db or os.environ.get("LOUPE_DB") or default_db_path())
    try:
        store = Store(db)
    except Exception as exc:  # an unusable store file: said in a window, not a traceback
        from PySide6.QtWidgets import QMessageBox

        QMessageBox.critical(None, "Loupe", f"The results store {db} cannot be opened: {exc}")
        return 2
    bridge = EngineBridge(model_loader(model_name, args.model_path, args.mmproj, threads, chosen.model_dir), db)
    models = ModelStore(Path(chosen.model_dir) if chosen.model_dir else default_model_root())
    window = MainWindow(
        bridge,
        store,
        default_task=args.task,
        settings=qsettings,
        model_store=models,
        make_loader=make_loader,
        model_name=model_name or "",
    )
    window.show()
    bridge.start()
    if args.images:
        window.enqueue(list(expand(args.images)))
    if args.screenshot:
        _screenshot_when_ready(window, bridge, args.screenshot, wait_for_result=bool(args.images))
    code = app.exec()
    bridge.stop()  # already stopped when the window closed; this covers any other way out of the event loop
    store.close()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
