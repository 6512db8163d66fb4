"""The frozen app's one entry point: `loupe-app` opens the desktop window, `loupe` is the CLI."""

from __future__ import annotations

import multiprocessing
import os
import sys


def main() -> int:
    """Dispatch on the executable's name (both executables in the bundle run this script)."""
    multiprocessing.freeze_support()
    name = os.path.basename(sys.argv[0]).lower().removesuffix(".exe")
    if name.endswith("loupe-app"):
        from desktop.app import main as app_main

        return app_main()
    from engine.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
