"""`loupe gui [IMAGES...]`: opens the desktop app (the CLI is the one layer above the desktop, so it imports it)."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from loupe.wiring import options


def add_options(p: argparse.ArgumentParser) -> None:
    """The app's arguments: images or folders to queue, then loupe.wiring.options.GUI."""
    p.add_argument("images", nargs="*", help="images or folders to queue at start")
    options.add(p, options.GUI)


def add_parsers(sub: Any) -> None:
    """Register `gui` on the `loupe` parser."""
    from loupe.cli.common import declare, examples

    g = examples(
        sub.add_parser("gui", help="open the desktop app (images or folders given are queued)"),
        "loupe gui",
        "loupe gui photos/ --task receipt",
        "loupe gui --model-path text.gguf --mmproj mmproj.gguf --db line1.db",
    )
    add_options(g)
    declare(g, outputs={"screenshot": "file"}, store="write")


def app_argv(args: argparse.Namespace) -> list[str]:
    """The parsed `gui` arguments as the app's own command line."""
    return [str(p) for p in args.images] + options.argv_of(vars(args), options.GUI)


def run_gui(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Start the app's event loop; its exit code is the command's."""
    try:
        from loupe.desktop.app import main
    except ImportError as exc:
        print(f"error: the desktop app is not installed ({exc}); install with `pip install -e '.[desktop]'`", file=err)
        return 2
    return int(main(app_argv(args)))
