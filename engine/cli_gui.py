"""`loupe gui [IMAGES...]`: opens the desktop app. The engine never imports the desktop package (an
import-linter contract), so the app is reached by name at run time through importlib, not by an import."""

from __future__ import annotations

import argparse
import importlib
from typing import Any, TextIO

APP_MODULE = "desktop.app"  # looked up by name only when the command runs


def add_parsers(sub: Any) -> None:
    """Register `gui` on the `loupe` parser; everything after it goes to the app's own parser."""
    g = sub.add_parser("gui", help="open the desktop app (images or folders given are queued)", add_help=False,
                       description="Everything after `gui` is passed to the app; `loupe gui --help` lists it.")
    g.add_argument("app_args", nargs=argparse.REMAINDER, metavar="IMAGES/OPTIONS")


def run_gui(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Start the app's event loop; its exit code is the command's."""
    try:
        app = importlib.import_module(APP_MODULE)  # by name: keeps the engine free of desktop imports
    except ImportError as exc:
        print(f"error: the desktop app is not installed ({exc}); install with `pip install -e '.[desktop]'`",
              file=err)
        return 2
    return int(app.main(list(args.app_args)))
