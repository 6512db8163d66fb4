"""Where Loupe keeps its files by default: an environment variable's path, else the per-user data directory."""

from __future__ import annotations

import os
from pathlib import Path


def user_data_file(env_var: str, name: str) -> Path:
    """$`env_var` (with ~ expanded), else `name` in the per-user data directory (e.g. ~/.local/share/loupe/)."""
    override = os.environ.get(env_var)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("loupe", appauthor=False)) / name
