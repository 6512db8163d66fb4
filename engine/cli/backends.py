"""The options every model-loading command takes for the non-llama.cpp backends (loupe.api.models opens them)."""

from __future__ import annotations

import argparse

from loupe.api.models import BACKENDS

BACKEND_CHOICES = BACKENDS


def add_backend_args(sp: argparse.ArgumentParser) -> None:
    """The options every model-loading command takes for the non-llama.cpp backends."""
    sp.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="auto: from the catalog entry's format, or from --model-path (a GGUF file: llama_cpp; a "
        "directory: onnx if it has onnx/, else mlx)",
    )
    sp.add_argument(
        "--ep",
        choices=["cpu", "openvino", "qnn", "dml", "coreml"],
        default=None,
        help="ONNX Runtime execution provider (default: the best available)",
    )
    sp.add_argument(
        "--quant",
        choices=["fp32", "fp16", "q4", "q8"],
        default=None,
        help="which ONNX files of a --model-path directory to load (default fp32)",
    )
