"""`loupe --version` prints the installed distribution's version."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys


def test_version_flag_prints_the_installed_version() -> None:
    done = subprocess.run([sys.executable, "-m", "loupe.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"loupe {importlib.metadata.version('loupe')}\n"
