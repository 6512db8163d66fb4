"""CLI side of the MLX and ONNX backends: `--backend`, `--ep`, `--quant`, and opening a model directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from loupe.backends.registry import backend_class
from loupe.core.errors import LoupeError

BACKEND_CHOICES = ("auto", "llama_cpp", "mlx", "onnx")
FORMAT_BACKEND = {"mlx": "mlx", "onnx": "onnx"}


class BackendChoiceError(LoupeError):
    """A backend option that does not fit the model given."""


def add_backend_args(sp: argparse.ArgumentParser) -> None:
    """The options every model-loading command takes for the non-llama.cpp backends."""
    sp.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                    help="auto: from the catalog entry's format, or from --model-path (a GGUF file: llama_cpp; a "
                         "directory: onnx if it has onnx/, else mlx)")
    sp.add_argument("--ep", choices=["cpu", "openvino", "qnn", "dml", "coreml"], default=None,
                    help="ONNX Runtime execution provider (default: the best available)")
    sp.add_argument("--quant", choices=["fp32", "fp16", "q4", "q8"], default=None,
                    help="which ONNX files of a --model-path directory to load (default fp32)")


def choose_backend(args: argparse.Namespace, path: Path | None, fmt: str | None) -> str:
    """The backend for this invocation (see `--backend`)."""
    chosen = getattr(args, "backend", "auto") or "auto"
    if chosen != "auto":
        return chosen
    if fmt is not None:
        return FORMAT_BACKEND.get(fmt, "llama_cpp")
    if path is not None and path.is_dir():
        return "onnx" if (path / "onnx").is_dir() else "mlx"
    return "llama_cpp"


def open_directory_backend(args: argparse.Namespace, err: TextIO) -> tuple[Any, str] | None:
    """Open an MLX/ONNX model named by --model or --model-path; None when the model is for llama.cpp."""
    from loupe.cli import offline

    path = Path(args.model_path) if getattr(args, "model_path", None) else None
    entry = None
    if path is None and getattr(args, "model", None):
        from loupe.models.catalog import load_catalog

        entry = load_catalog().other_formats.get(args.model)
    backend = choose_backend(args, path, entry.format if entry else None)
    if backend == "llama_cpp":
        return None
    if entry is not None:
        from loupe.models.hf_fetch import fetch
        from loupe.models.store import default_model_root

        if entry.format != backend:
            raise BackendChoiceError(f"model {entry.name!r} is in {entry.format} format; it needs --backend "
                                     f"{FORMAT_BACKEND[entry.format]}")
        from loupe.cli.models import progress_bar

        path = fetch(entry, default_model_root(), offline=offline(), progress=progress_bar(err, True))
    if path is None:
        raise BackendChoiceError(f"--backend {backend} needs --model-path DIR or an {backend} catalog model")
    if getattr(args, "mmproj", None):
        raise BackendChoiceError(f"--mmproj is for GGUF models; the {backend} backend takes a model directory")
    name = entry.name if entry else path.name
    cls = backend_class(backend)
    if backend == "onnx":
        quant = (entry.quantization if entry else None) or getattr(args, "quant", None) or "fp32"
        return cls(path, quant=quant, ep=getattr(args, "ep", None), model_id=name,
                   n_threads=getattr(args, "threads", None)), name
    return cls(path, model_id=name), name
