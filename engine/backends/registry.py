"""Backend name -> its class, imported only when asked for, so optional dependencies stay optional.

Dispatch by table; each entry's loader is a plain import inside a function (visible to import-linter, never a
module name looked up at run time).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from loupe.core.errors import LoupeError


def _llama_cpp() -> type:
    from loupe.backends.llama_cpp import LlamaCppBackend

    return LlamaCppBackend


def _llama_cpp_worker() -> type:
    from loupe.backends.worker import WorkerBackend

    return WorkerBackend


def _cloud() -> type:
    from loupe.backends.cloud import CloudBackend

    return CloudBackend


def _fake() -> type:
    from loupe.backends.fake import FakeBackend

    return FakeBackend


def _mlx() -> type:
    from loupe.backends.mlx_vlm import MlxVlmBackend

    return MlxVlmBackend


def _onnx() -> type:
    from loupe.backends.onnx import OnnxBackend

    return OnnxBackend


@dataclass(frozen=True)
class BackendEntry:
    """How to get a backend's class and which package it needs."""

    load: Callable[[], type]
    requires: str  # import name of the optional dependency
    extra: str = ""  # the pip extra that installs it
    worker: Callable[[], type] | None = None  # the class that runs this backend in a child process


BACKENDS: dict[str, BackendEntry] = {
    "llama_cpp": BackendEntry(_llama_cpp, "llama_cpp", worker=_llama_cpp_worker),
    "cloud": BackendEntry(_cloud, "openai", "cloud"),
    "fake": BackendEntry(_fake, "loupe"),
    "mlx": BackendEntry(_mlx, "mlx_vlm", "mlx"),
    "onnx": BackendEntry(_onnx, "onnxruntime", "onnx"),
}


def available() -> dict[str, bool]:
    """Each known backend and whether its dependency is installed."""
    return {name: importlib.util.find_spec(e.requires) is not None for name, e in BACKENDS.items()}


def missing(name: str) -> str | None:
    """Why backend `name` cannot be used here (its package is not installed, with the install hint), else None."""
    entry = BACKENDS.get(name)
    if entry is None:
        return f"unknown backend {name!r} (known: {', '.join(BACKENDS)})"
    if importlib.util.find_spec(entry.requires) is None:
        fix = f" (pip install 'loupe[{entry.extra}]')" if entry.extra else ""
        return f"backend {name!r} needs the package {entry.requires!r}, which is not installed{fix}"
    return None


def backend_class(name: str, *, in_process: bool = False) -> type:
    """The class for backend `name`, importing its module only now: the one that runs it in a supervised child
    process where it has one (native code; $LOUPE_MODEL_WORKER=off or `in_process` for the plain class)."""
    problem = missing(name)
    if problem is not None:
        raise LoupeError(problem)
    entry = BACKENDS[name]
    from loupe.backends.worker import enabled

    if entry.worker is not None and not in_process and enabled():
        return entry.worker()
    return entry.load()
