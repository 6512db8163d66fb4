"""`loupe gui [IMAGES...]`: opens the desktop app, reached by name at run time, never imported by the engine.

The engine never imports the desktop package (an import-linter contract), so the app is reached through importlib,
not by an import. The app's options are declared here once; `loupe.desktop.app` builds its own parser from the same table.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any, TextIO

APP_MODULE = "loupe.desktop.app"  # looked up by name only when the command runs

OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--model", {"help": "installed model name (default: the last one used, else the catalog default, else "
                         "synthetic)"}),
    ("--model-path", {"help": "text model GGUF (with --mmproj)"}),
    ("--mmproj", {"help": "vision projector GGUF (with --model-path)"}),
    ("--threads", {"type": int, "default": None, "help": "CPU threads for the model"}),
    ("--db", {"help": "results store (default: $LOUPE_DB or the user data directory)"}),
    ("--task", {"help": "task selected at start (a built-in name; default: the last one used)"}),
    ("--settings", {"metavar": "INI", "help": "settings file (default: the platform's place for Loupe)"}),
    ("--screenshot", {"metavar": "PNG", "help": "save the window to PNG once the first result is shown, quit"}),
)


def add_options(p: argparse.ArgumentParser) -> None:
    """The app's arguments: images or folders to queue, then OPTIONS."""
    p.add_argument("images", nargs="*", help="images or folders to queue at start")
    for flag, kwargs in OPTIONS:
        p.add_argument(flag, **kwargs)


def add_parsers(sub: Any) -> None:
    """Register `gui` on the `loupe` parser."""
    add_options(sub.add_parser("gui", help="open the desktop app (images or folders given are queued)"))


def app_argv(args: argparse.Namespace) -> list[str]:
    """The parsed `gui` arguments as the app's own command line."""
    argv = [str(p) for p in args.images]
    for flag, _ in OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            argv += [flag, str(value)]
    return argv


def run_gui(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Start the app's event loop; its exit code is the command's."""
    try:
        app = importlib.import_module(APP_MODULE)  # by name: keeps the engine free of desktop imports
    except ImportError as exc:
        print(f"error: the desktop app is not installed ({exc}); install with `pip install -e '.[desktop]'`",
              file=err)
        return 2
    return int(app.main(app_argv(args)))
