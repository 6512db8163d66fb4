"""How a model reaches the workers: by name, file names, sizes and sha256, never its weights through the object store.

The driver describes the model it would load (`model_ref`); each actor finds the files on its own node (the path
the driver used, when the node shares it, or a shared models dir), checks their sha256 once, and loads them through
the one model factory (loupe.api.models). A catalog model missing on a node is pulled there (the catalog's verified
download) unless Loupe is offline.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loupe.api.models import ModelSpec
from loupe.core.errors import LoupeError
from loupe.models.catalog import ModelError
from loupe.models.download import sha256_file
from loupe.models.store import ModelStore, default_model_root

ROLES = ("text", "mmproj")


class ModelRefError(LoupeError):
    """A worker cannot find the model the driver named, or its files differ from the driver's."""


@dataclass(frozen=True)
class ModelFile:
    """One model file as the driver has it: role, file name, size, sha256, and its path on the driver."""

    role: str
    name: str
    size: int
    sha256: str
    path: str


@dataclass(frozen=True)
class ModelRef:
    """The model a job runs, as workers look for it (a few hundred bytes, whatever the model's size)."""

    name: str  # the name results record: a catalog or imported name, or the text file's stem
    files: tuple[ModelFile, ...]
    catalog: bool  # a name the model store resolves (catalog, imported, synthetic), not files given by path

    @property
    def size(self) -> int:
        """Bytes of all the model's files (what plan.py sizes actors by)."""
        return sum(f.size for f in self.files)


def model_ref(name: str, files: Sequence[Path], *, catalog: bool) -> ModelRef:
    """Describe the model the driver would load (hashes each file once, on the driver)."""
    described = tuple(
        ModelFile(role, f.name, f.stat().st_size, sha256_file(f), str(f)) for role, f in zip(ROLES, files, strict=True)
    )
    return ModelRef(name, described, catalog)


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("LOUPE_OFFLINE", "HF_HUB_OFFLINE"))


def _candidates(ref: ModelRef, f: ModelFile, root: Path, store: ModelStore | None) -> list[Path]:
    """Where a node may hold one file: the driver's path, the store's own place for the name, the models dir."""
    out = [Path(f.path)]
    if store is not None:
        try:
            resolved = store.resolve(ref.name)  # builds a synthetic model on this node if needed
            out.append(resolved.text_path if f.role == "text" else resolved.mmproj_path)
        except (LoupeError, ModelError):  # not installed here (yet)
            pass
    out += [root / ref.name / f.name, root / f.name, root / "imported" / ref.name / f.name]
    return out


def locate(ref: ModelRef, models_dir: Path | None = None, *, download: bool | None = None) -> tuple[Path, ...]:
    """The model's files on this node, each checked against the driver's size and sha256; else a one-line error.
    A catalog model that is not here is downloaded (verified) when `download` (default: unless offline)."""
    root = Path(models_dir).expanduser() if models_dir else default_model_root()
    store = ModelStore(root) if ref.catalog else None
    found: list[Path] = []
    for f in ref.files:
        path, wrong = _find(f, _candidates(ref, f, root, store))
        if path is None and store is not None and _may_pull(store, ref.name, download):
            store.pull(ref.name)  # the catalog's verified download
            path, wrong = _find(f, _candidates(ref, f, root, store))
        if path is None:
            where = socket.gethostname()
            if wrong is not None:
                raise ModelRefError(
                    f"model {ref.name!r} on {where}: {wrong} is not the driver's {f.name} (sha256 differs); "
                    f"copy the driver's file there or put it in the models dir {root}"
                )
            raise ModelRefError(
                f"model {ref.name!r} is not on {where}: no {f.name} ({f.size} bytes) at {f.path} nor in the "
                f"models dir {root}; put it there (--models-dir) or `loupe models pull` it on that node"
            )
        found.append(path)
    return tuple(found)


def _may_pull(store: ModelStore, name: str, download: bool | None) -> bool:
    """Whether a missing model is downloaded here: a real catalog model, and downloads allowed (not offline)."""
    allowed = download if download is not None else not _offline()
    return allowed and name in store.catalog and not store.catalog.get(name).is_synthetic


def _find(f: ModelFile, paths: Sequence[Path]) -> tuple[Path | None, Path | None]:
    """(the first path holding exactly this file, else None; a path with the same name but other bytes, if any)."""
    wrong = None
    seen: set[Path] = set()
    for p in paths:
        if p in seen or not p.is_file():
            continue
        seen.add(p)
        if p.stat().st_size == f.size and sha256_file(p) == f.sha256:
            return p, None
        wrong = wrong or p
    return None, wrong


def spec_for(ref: ModelRef, files: Sequence[Path], threads: int | None) -> ModelSpec:
    """The ModelSpec that loads the located files under the ref's name (loupe.api.models.open_backend)."""
    text, mmproj = files
    return ModelSpec(model=ref.name, path=str(text), mmproj=str(mmproj), threads=threads)
