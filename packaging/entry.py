"""The frozen app's one entry point: `loupe-app` opens the desktop window, `loupe` is the CLI."""

from __future__ import annotations

import multiprocessing
import os
import sys

WORKER_FLAG = "--loupe-model-worker"  # loupe.backends.worker.FROZEN_WORKER_FLAG


def main() -> int:
    """Dispatch on the executable's name (both executables in the bundle run this script)."""
    multiprocessing.freeze_support()
    if len(sys.argv) == 3 and sys.argv[1] == WORKER_FLAG:  # the model process (loupe.backends.worker)
        from multiprocessing.connection import Connection

        from loupe.backends.worker_child import main as worker_main

        worker_main(Connection(int(sys.argv[2])))
        return 0
    name = os.path.basename(sys.argv[0]).lower().removesuffix(".exe")
    if name.endswith("loupe-app"):
        from loupe.desktop.app import main as app_main

        return app_main()
    from loupe.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
