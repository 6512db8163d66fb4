"""Which model the window runs: a name from the model store or a GGUF pair, loaded by loupe.api.models.open_backend
(the one way every model is loaded), wrapped for the window's worker thread."""

from __future__ import annotations

from collections.abc import Callable

from loupe.api import Engine, ModelSpec, format_problem, open_backend
from loupe.desktop.runner import LoadedModel
from loupe.models import ModelStore

__all__ = ["format_problem", "load_from_store", "load_spec", "store_loader"]


def load_spec(spec: ModelSpec, store: ModelStore | None = None) -> LoadedModel:
    """Load `spec`; with no name, the catalog default, else the synthetic model (directory models must be
    downloaded already: the Models… dialog does that)."""
    opened = open_backend(spec, store=store)
    return LoadedModel(Engine(opened.backend, model=opened.name), opened.name, opened.synthetic)


def load_from_store(store: ModelStore, name: str | None, threads: int | None = None) -> LoadedModel:
    """Load `name` (None: the default) from `store` with the backend its catalog format needs."""
    return load_spec(ModelSpec(model=name or "", threads=threads, fallback=True), store)


def store_loader(store: ModelStore, name: str | None, threads: int | None = None) -> Callable[[], LoadedModel]:
    """A loader for the worker thread (`load_from_store` there, so loading never blocks the window)."""
    return lambda: load_from_store(store, name, threads)
