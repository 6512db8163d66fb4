"""Backend name -> (module, class), resolved lazily so optional dependencies stay optional."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from loupe.core.errors import LoupeError


@dataclass(frozen=True)
class BackendEntry:
    """Where a backend lives and which package it needs."""

    module: str
    cls: str
    requires: str  # import name of the optional dependency
    extra: str = ""  # the pip extra that installs it
    worker: str = ""  # "module:Class" that runs this backend in a child process (loupe.backends.worker)


BACKENDS: dict[str, BackendEntry] = {
    "llama_cpp": BackendEntry("loupe.backends.llama_cpp", "LlamaCppBackend", "llama_cpp",
                              worker="loupe.backends.worker:WorkerBackend"),
    "cloud": BackendEntry("loupe.backends.cloud", "CloudBackend", "openai", "cloud"),
    "fake": BackendEntry("loupe.backends.fake", "FakeBackend", "loupe"),
    "mlx": BackendEntry("loupe.backends.mlx_vlm", "MlxVlmBackend", "mlx_vlm", "mlx"),
    "onnx": BackendEntry("loupe.backends.onnx", "OnnxBackend", "onnxruntime", "onnx"),
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

    if entry.worker and not in_process and enabled():
        module, _, cls = entry.worker.partition(":")
        return getattr(importlib.import_module(module), cls)
    return getattr(importlib.import_module(entry.module), entry.cls)
