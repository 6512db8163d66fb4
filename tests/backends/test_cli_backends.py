"""`loupe analyze` on MLX / ONNX model directories, as a user runs it (real models, real CLI parser)."""

from __future__ import annotations

import io
import json

import pytest
from loupe.cli import main

from tests.backends.conftest import TINY

SMOL = str(TINY / "smolvlm" / "hf")


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("backend", "module"), [("onnx", "onnxruntime"), ("mlx", "mlx_vlm"), ("auto", "onnxruntime")])
def test_analyze_a_model_directory(images, backend, module):
    pytest.importorskip(module)
    rc, out, err = _run(
        "analyze",
        str(images["jpeg"]),
        "--task",
        "describe",
        "--model-path",
        SMOL,
        "--backend",
        backend,
        "--ep" if backend == "onnx" else "--threads",
        "cpu" if backend == "onnx" else "1",
    )
    assert rc == 0, err
    result = json.loads(out)
    assert result["status"] == "ok" and result["backend"] == ("onnx" if backend == "auto" else backend)
    assert set(result["data"]) == {"caption", "tags"} and result["confidence"]
    assert "PyTorch was not found" not in err


def test_backend_errors_are_one_clear_line(images):
    pytest.importorskip("onnxruntime")
    import onnxruntime
    from loupe.backends.onnx import EXECUTION_PROVIDERS

    if EXECUTION_PROVIDERS["qnn"] not in onnxruntime.get_available_providers():
        rc, _, err = _run("analyze", str(images["jpeg"]), "--model-path", SMOL, "--ep", "qnn")
        assert rc != 0 and "execution provider 'qnn' is not in this onnxruntime build" in err
    rc, _, err = _run("analyze", str(images["jpeg"]), "--model", "smolvlm-256m-onnx-q4")
    assert rc != 0 and "is not downloaded and Loupe is offline" in err  # tests never download
    rc, _, err = _run("analyze", str(images["jpeg"]), "--model", "smolvlm-256m-mlx", "--backend", "onnx")
    assert rc != 0 and "needs --backend mlx" in err
    rc, _, err = _run("analyze", str(images["jpeg"]), "--model-path", SMOL, "--mmproj", "x.gguf", "--backend", "onnx")
    assert rc != 0 and "--mmproj is for GGUF models" in err
