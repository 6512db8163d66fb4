"""Loading and configuration errors of the ONNX and MLX backends: clear messages that name the fix."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from loupe.core.errors import BackendError, ModelLoadError

from tests.backends.conftest import TINY

ort = pytest.importorskip("onnxruntime")


def test_default_provider_is_the_best_available():
    from loupe.backends.onnx import pick_provider

    assert pick_provider(None, ["CPUExecutionProvider"]) == "CPUExecutionProvider"
    assert pick_provider(None, ["OpenVINOExecutionProvider", "CPUExecutionProvider"]) == "OpenVINOExecutionProvider"
    assert pick_provider(None, ["CoreMLExecutionProvider", "QNNExecutionProvider"]) == "QNNExecutionProvider"
    assert pick_provider(None) in ort.get_available_providers()


@pytest.mark.parametrize("ep", ["openvino", "qnn", "dml", "coreml"])
def test_an_absent_provider_is_a_clear_error(ep):
    from loupe.backends.onnx import EXECUTION_PROVIDERS, pick_provider

    if EXECUTION_PROVIDERS[ep] in ort.get_available_providers():
        pytest.skip(f"{ep} is available here")
    with pytest.raises(BackendError, match=rf"execution provider '{ep}' is not in this onnxruntime build.*--ep cpu"):
        pick_provider(ep)


def test_unknown_provider_and_quantisation_are_named():
    from loupe.backends.onnx import OnnxBackend, pick_provider

    with pytest.raises(BackendError, match=r"unknown execution provider 'tpu'.*cpu"):
        pick_provider("tpu")
    with pytest.raises(BackendError, match="unknown ONNX quantisation 'q3'"):
        OnnxBackend(TINY / "smolvlm" / "hf", quant="q3")
    with pytest.raises(ModelLoadError, match=r"lacks vision_encoder_q4\.onnx.*'q4'"):
        OnnxBackend(TINY / "smolvlm" / "hf", quant="q4")


def test_missing_or_corrupt_onnx_model_is_a_clear_error(tmp_path):
    from loupe.backends.onnx import OnnxBackend

    with pytest.raises(ModelLoadError, match="model directory not found"):
        OnnxBackend(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"missing config\.json"):
        OnnxBackend(tmp_path / "empty")
    copy = tmp_path / "model"
    shutil.copytree(TINY / "smolvlm" / "hf", copy)
    decoder = copy / "onnx" / "decoder_model_merged.onnx"
    decoder.write_bytes(decoder.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match=r"ONNX Runtime cannot load.*truncated or corrupt"):
        OnnxBackend(copy)


def test_kv_cache_matches_a_full_recompute():
    """Decoding with past KV gives the same logits as re-running the whole sequence."""
    from loupe.backends.onnx import OnnxBackend

    from tests.backends.conftest import golden_request

    b = OnnxBackend(TINY / "smolvlm" / "hf", n_threads=1)
    ids = np.asarray(
        b.processor(
            text=b.processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "text", "text": "a b c"}]}], add_generation_prompt=True
            ),
            return_tensors="np",
        )["input_ids"]
    )  # np.asarray: with mlx-vlm imported, processors may hand back mx arrays
    past = b._empty_past()
    b._run_decoder(b.embed(ids), past, 0)
    stepped = b._run_decoder(b.embed(np.array([[5, 6]])), past, ids.shape[1])
    full = b._run_decoder(b.embed(np.concatenate([ids, [[5, 6]]], axis=1)), b._empty_past(), 0)
    assert np.abs(stepped - full).max() < 1e-4
    assert b.first_logits(golden_request())[0].shape == (b.vocab.n_vocab,)
    b.close()


def test_mlx_refuses_a_directory_without_weights(tmp_path):
    pytest.importorskip("mlx_vlm")
    from loupe.backends.mlx_vlm import MlxVlmBackend

    copy = tmp_path / "model"
    shutil.copytree(TINY / "smolvlm" / "hf", copy, ignore=shutil.ignore_patterns("*.safetensors", "onnx"))
    with pytest.raises(ModelLoadError, match=r"no \*\.safetensors weights"):
        MlxVlmBackend(copy)
    with pytest.raises(ModelLoadError, match="model directory not found"):
        MlxVlmBackend(tmp_path / "nope")


def test_registry_lists_the_new_backends_lazily():
    from loupe.backends.registry import BACKENDS, available, backend_class

    assert {"mlx", "onnx"} <= set(BACKENDS)
    assert available()["onnx"] is True
    assert backend_class("onnx").__name__ == "OnnxBackend"
