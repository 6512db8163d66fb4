"""Which backend loads the model the window picked: GGUF pairs through llama.cpp, MLX / ONNX directories through
the backend registry (each with its own optional extra)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from loupe.api import Engine
from loupe.backends.registry import backend_class, missing
from loupe.cli.backends import FORMAT_BACKEND
from loupe.core.errors import LoupeError
from loupe.desktop.runner import LoadedModel
from loupe.models.catalog import CatalogEntry
from loupe.models.store import ModelNotInstalled, ModelStore

SYNTHETIC_FALLBACK = "synthetic-smolvlm"
ONNX_EP = "cpu"  # the desktop runs ONNX models on the CPU execution provider unless told otherwise

BuildDirectory = Callable[[type, Path, CatalogEntry, int | None], Any]


def _onnx(cls: type, path: Path, entry: CatalogEntry, threads: int | None) -> Any:
    return cls(path, quant=entry.quantization or "fp32", ep=ONNX_EP, model_id=entry.name, n_threads=threads)


def _mlx(cls: type, path: Path, entry: CatalogEntry, _threads: int | None) -> Any:
    return cls(path, model_id=entry.name)


DIRECTORY_BUILDERS: dict[str, BuildDirectory] = {"onnx": _onnx, "mlx": _mlx}


def format_problem(store: ModelStore, name: str) -> str | None:
    """Why a directory model cannot run here (its backend's extra is missing, with the install hint), else None."""
    if name not in store.directories:
        return None
    return missing(FORMAT_BACKEND[store.directories.entry(name).format])


def directory_model(store: ModelStore, name: str, threads: int | None) -> LoadedModel:
    """An MLX / ONNX catalog model that has been downloaded, opened with the backend its format needs."""
    entry = store.directories.entry(name)
    problem = format_problem(store, name)
    if problem is not None:
        raise LoupeError(problem)
    status = store.directories.status(name)
    if status.state != "installed" or status.path is None:
        raise ModelNotInstalled(f"model {name!r} is not ready ({status.detail}). Fix: download it in Models… "
                                f"(or run `loupe models pull {name}`)")
    backend_name = FORMAT_BACKEND[entry.format]
    backend = DIRECTORY_BUILDERS[backend_name](backend_class(backend_name), status.path, entry, threads)
    return LoadedModel(Engine(backend, model=name), name, synthetic=False)


def gguf_model(store: ModelStore, name: str | None, threads: int | None) -> LoadedModel:
    """A GGUF model from the store through llama.cpp; with no name, the catalog default or else the synthetic one."""
    from loupe.backends.user_caches import llama_cache_kwargs

    chosen = name or store.catalog.default
    try:
        resolved = store.resolve(chosen)
    except ModelNotInstalled:
        if name:  # asked for by name: say so rather than run something else
            raise
        chosen = SYNTHETIC_FALLBACK
        resolved = store.resolve(chosen)
    backend = backend_class("llama_cpp")(resolved.text_path, resolved.mmproj_path, model_id=chosen,
                                         n_threads=threads, **llama_cache_kwargs())
    return LoadedModel(Engine(backend, model=chosen), chosen, resolved.synthetic)


def load_from_store(store: ModelStore, name: str | None, threads: int | None = None) -> LoadedModel:
    """Load `name` (None: the default) from `store` with the backend its catalog format needs."""
    if name and name in store.directories:
        return directory_model(store, name, threads)
    return gguf_model(store, name, threads)


def store_loader(store: ModelStore, name: str | None, threads: int | None = None) -> Callable[[], LoadedModel]:
    """A loader for the worker thread (`load_from_store` there, so loading never blocks the window)."""
    return lambda: load_from_store(store, name, threads)
