"""Small file helpers for the model store: atomic JSON, moving bad files aside, `.part` names, slugs, times."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loupe.models.catalog import ModelError


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path` ({} when absent); ModelError when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is unreadable ({exc}); move it away and pull or import again") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object; move it away and pull or import again")
    return data


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write a temporary file in the same directory, then os.replace it: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def move_aside(path: Path) -> Path:
    """Rename a bad file (or `.part`) to <final name>.corrupt, never deleting it; returns the new path."""
    base = path.name
    if base.endswith(".part"):
        base = base[: -len(".part")].rsplit(".", 1)[0]  # drop ".<etag tag>.part"
    target = path.with_name(f"{base}.corrupt")
    counter = 1
    while target.exists():
        target = path.with_name(f"{base}.corrupt.{counter}")
        counter += 1
    os.replace(path, target)
    return target


def remove_stale_parts(model_dir: Path, filename: str, keep: Path) -> None:
    """Partial downloads of an older upstream version of `filename` cannot be resumed: drop them."""
    for stale in model_dir.glob(f"{glob.escape(filename)}.*.part"):
        if stale != keep:
            stale.unlink(missing_ok=True)


def partial_detail(name: str, parts: list[Path]) -> str:
    """What `loupe models list` says of interrupted downloads (`.part` files) of model `name`; '' when none."""
    if not parts:
        return ""
    held = sum(p.stat().st_size for p in parts)
    return f"partial download ({held} bytes); `loupe models pull {name}` resumes it"


def etag_tag(etag: str) -> str:
    """A short, filename-safe tag for an ETag, so a `.part` is only resumed against the same upstream file."""
    return hashlib.sha256(etag.encode()).hexdigest()[:12]


def slug(text: str) -> str:
    """A model name made from free text (lower case, safe characters, at most 64)."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:64]
    return slug or "imported-model"


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
