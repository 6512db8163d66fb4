"""Fetch an MLX / ONNX catalog model (a Hugging Face model directory) and pin its files on first use.

GGUF pairs go through models.store; directory formats are fetched here with huggingface_hub's
snapshot_download (resumable, only the catalog entry's `files`), then every file's sha256 is recorded in
<dir>/manifest.json the first time ("trust on first use", as for GGUF entries with an empty sha256) and
checked by `verify_dir` from then on.
"""

from __future__ import annotations

import json
from pathlib import Path

from models.catalog import CatalogEntry, ModelError
from models.download import sha256_file

MANIFEST = "manifest.json"


def model_dir(entry: CatalogEntry, root: Path) -> Path:
    """Where the directory of `entry` lives under the model root."""
    return root / entry.name


def fetch(entry: CatalogEntry, root: Path, *, offline: bool) -> Path:
    """The local directory of `entry`, downloading its files unless `offline` (then it must be there)."""
    target = model_dir(entry, root)
    if (target / MANIFEST).is_file():
        return target
    if offline:
        raise ModelError(f"model {entry.name!r} is not downloaded and Loupe is offline "
                         f"(unset LOUPE_OFFLINE/HF_HUB_OFFLINE, or pass --model-path DIR)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        snapshot_download(entry.repo_id, revision=entry.revision, allow_patterns=list(entry.files),
                          local_dir=target)
    except (HfHubHTTPError, OSError) as exc:
        raise ModelError(f"cannot download {entry.repo_id}: {exc}") from None
    pin(target)
    return target


def pin(directory: Path) -> dict[str, str]:
    """Record the sha256 of every file in `directory` (first use); returns path -> sha256."""
    digests = {str(p.relative_to(directory)): sha256_file(p) for p in sorted(directory.rglob("*"))
               if p.is_file() and p.name != MANIFEST and ".cache" not in p.parts}
    (directory / MANIFEST).write_text(json.dumps({"version": 1, "sha256": digests}, indent=1) + "\n")
    return digests


def verify_dir(directory: Path) -> list[str]:
    """Files whose sha256 differs from the pinned one, or that are missing (empty list: all good)."""
    pinned = json.loads((directory / MANIFEST).read_text())["sha256"]
    bad = []
    for rel, digest in pinned.items():
        path = directory / rel
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(rel)
    return bad
