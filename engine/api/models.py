"""open_model: the one way from a model name or files to a loaded Engine (CLI, desktop, kiosk, escalation rungs).

A spec names a catalog or imported model, or files (a text GGUF with its mmproj, or an ONNX / MLX directory).
GGUF pairs run through llama.cpp (in its supervised model process), directories through the backend their format
needs. Everything that loads a model goes through `open_backend` / `open_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loupe.api.engine import Engine
from loupe.backends.registry import backend_class, missing
from loupe.backends.user_caches import llama_cache_kwargs
from loupe.core.errors import LoupeError
from loupe.models.catalog import CatalogEntry
from loupe.models.store import ModelNotInstalled, ModelStore, default_model_root

BACKENDS = ("auto", "llama_cpp", "mlx", "onnx")
FORMAT_BACKEND = {"mlx": "mlx", "onnx": "onnx"}  # a catalog entry's format -> its backend (else llama_cpp)
SYNTHETIC_FALLBACK = "synthetic-smolvlm"

# (catalog entry, model root) -> the downloaded directory; None: a directory model must already be installed
Fetch = Callable[[CatalogEntry, Path], Path]


class BackendChoiceError(LoupeError):
    """A backend option that does not fit the model given."""


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how: a catalog/imported name, or files; plus the backend's knobs."""

    model: str = ""  # catalog or imported name ("": the catalog default)
    path: str = ""  # a text GGUF (with mmproj), or an ONNX / MLX model directory
    mmproj: str = ""
    backend: str = "auto"  # one of BACKENDS
    threads: int | None = None
    ep: str | None = None  # ONNX Runtime execution provider
    quant: str | None = None  # which ONNX files of a directory
    constraint: str = "llguidance"  # or "gbnf" (llama.cpp's own grammar, for comparison)
    model_dir: str = ""  # the model store's root ("": the default)
    fallback: bool = False  # no name given and the default not installed: the synthetic model instead

    @property
    def label(self) -> str:
        """The model's name as results record it (the catalog name, else the file's or folder's stem)."""
        return self.model or (Path(self.path).stem if self.path else "")

    def store(self) -> ModelStore:
        """The model store this spec resolves names in."""
        return ModelStore(Path(self.model_dir) if self.model_dir else default_model_root())


@dataclass(frozen=True)
class Opened:
    """A loaded backend, the name results record, and whether its weights are random (a synthetic model)."""

    backend: Any
    name: str
    synthetic: bool = False

    @property
    def notes(self) -> tuple[str, ...]:
        """What the backend wants the user told (e.g. a projector converted for speed)."""
        return tuple(getattr(self.backend, "notes", ()))


def choose_backend(spec: ModelSpec, path: Path | None, fmt: str | None) -> str:
    """The backend for this spec: as asked, else from the catalog format, else from the path."""
    if spec.backend != "auto":
        return spec.backend
    if fmt is not None:
        return FORMAT_BACKEND.get(fmt, "llama_cpp")
    if path is not None and path.is_dir():
        return "onnx" if (path / "onnx").is_dir() else "mlx"
    return "llama_cpp"


def format_problem(store: ModelStore, name: str) -> str | None:
    """Why a directory model cannot run here (its backend's extra is missing, with the install hint), else None."""
    if name not in store.directories:
        return None
    return missing(FORMAT_BACKEND[store.directories.entry(name).format])


def _directory(spec: ModelSpec, store: ModelStore, fetch: Fetch | None) -> Opened | None:
    """An ONNX / MLX model, or None when the spec is for llama.cpp."""
    path = Path(spec.path) if spec.path else None
    entry = None
    if path is None and spec.model:
        entry = store.directories.entry(spec.model) if spec.model in store.directories else None
    backend = choose_backend(spec, path, entry.format if entry else None)
    if backend == "llama_cpp":
        return None
    if entry is not None:
        if entry.format != backend:
            raise BackendChoiceError(
                f"model {entry.name!r} is in {entry.format} format; it needs --backend {FORMAT_BACKEND[entry.format]}"
            )
        problem = missing(backend)
        if problem is not None:
            raise LoupeError(problem)
        if fetch is not None:
            path = fetch(entry, store.root)
        else:
            status = store.directories.status(entry.name)
            if status.state != "installed" or status.path is None:
                raise ModelNotInstalled(
                    f"model {entry.name!r} is not ready ({status.detail}). Fix: download it "
                    f"in Models… (or run `loupe models pull {entry.name}`)"
                )
            path = status.path
    if path is None:
        raise BackendChoiceError(f"--backend {backend} needs --model-path DIR or an {backend} catalog model")
    if spec.mmproj:
        raise BackendChoiceError(f"--mmproj is for GGUF models; the {backend} backend takes a model directory")
    name = entry.name if entry else path.name
    cls = backend_class(backend)
    if backend == "onnx":
        quant = (entry.quantization if entry else None) or spec.quant or "fp32"
        return Opened(cls(path, quant=quant, ep=spec.ep, model_id=name, n_threads=spec.threads), name)
    return Opened(cls(path, model_id=name), name)


def open_backend(spec: ModelSpec, *, store: ModelStore | None = None, fetch: Fetch | None = None) -> Opened:
    """Load the backend for `spec`, names resolved in `store` (default: spec.store()). `fetch` downloads a
    directory model that is not there yet (the CLI's way); without it such a model must be installed already (the
    desktop's Models… dialog downloads)."""
    store = store if store is not None else spec.store()
    other = _directory(spec, store, fetch)
    if other is not None:
        return other
    llama = backend_class("llama_cpp")
    caches = llama_cache_kwargs()  # task-prefix KV state and BF16 projector copies, kept between runs
    if spec.path or spec.mmproj:
        if not (spec.path and spec.mmproj):
            raise BackendChoiceError("--model-path and --mmproj go together")
        backend = llama(
            spec.path,
            spec.mmproj,
            model_id=spec.label,
            n_threads=spec.threads,
            constraint_engine=spec.constraint,
            **caches,
        )
        return Opened(backend, spec.label)
    name = spec.model or store.catalog.default
    try:
        resolved = store.resolve(name)
    except ModelNotInstalled:
        if spec.model or not spec.fallback:  # asked for by name: say so rather than run something else
            raise
        name = SYNTHETIC_FALLBACK
        resolved = store.resolve(name)
    backend = llama(
        resolved.text_path,
        resolved.mmproj_path,
        model_id=name,
        n_threads=spec.threads,
        constraint_engine=spec.constraint,
        **caches,
    )
    return Opened(backend, name, resolved.synthetic)


def open_model(spec: ModelSpec, *, store: ModelStore | None = None, fetch: Fetch | None = None) -> Engine:
    """The Engine for `spec` (see open_backend); `engine.model` is the name results record."""
    opened = open_backend(spec, store=store, fetch=fetch)
    return Engine(opened.backend, model=opened.name)
