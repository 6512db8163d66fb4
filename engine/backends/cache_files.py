"""What the on-disk caches of the llama.cpp backend share: where they live and how they stay within a size."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

OFF = ("0", "off", "no", "false")


def cache_root(env: str, name: str) -> Path | None:
    """$`env` (a directory; 0/off/no/false: no cache), else `name` under the per-user cache directory."""
    override = os.environ.get(env, "").strip()
    if override.lower() in OFF:
        return None
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("loupe", appauthor=False)) / name


def trim_lru(root: Path, pattern: str, max_bytes: int, keep: Path | None = None) -> None:
    """Delete the least recently used files matching `pattern` in `root` until the rest fit in `max_bytes`
    (`keep` is never deleted). Files that vanish or cannot be deleted meanwhile are skipped."""
    entries = []
    for path in root.glob(pattern):
        try:
            st = path.stat()
        except OSError:
            continue
        entries.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if path == keep:
            continue
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
            total -= size
