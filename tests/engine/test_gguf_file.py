"""The hand-written GGUF header reader against files written by the gguf package (and broken ones)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from loupe.backends.gguf_file import check_gguf, projector_type, string_value
from loupe.core.errors import ModelLoadError


def _write(path: Path) -> Path:
    w = GGUFWriter(str(path), "clip")
    w.add_uint32("clip.vision.image_size", 512)
    w.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])  # string arrays are skipped element by element
    w.add_array("some.floats", [0.5, 1.5])
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", "idefics3")
    w.add_tensor("v.x", np.zeros((2, 2), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_string_values_are_read_past_every_value_type(tmp_path):
    path = _write(tmp_path / "m.gguf")
    assert projector_type(path) == "idefics3"
    assert string_value(path, "general.architecture") == "clip"
    assert string_value(path, "no.such.key") is None


def test_projector_type_of_the_tiny_models(tiny_models):
    assert projector_type(tiny_models["smolvlm"].mmproj_path) == "idefics3"
    assert projector_type(tiny_models["gemma3"].mmproj_path) == "gemma3"
    assert projector_type(tiny_models["gemma3"].text_path) == ""  # a text model has no projector


@pytest.mark.parametrize("cut", [4, 12, 40, 90])
def test_a_truncated_header_reads_as_unknown_not_an_exception(tmp_path, cut):
    whole = _write(tmp_path / "m.gguf").read_bytes()
    broken = tmp_path / "cut.gguf"
    broken.write_bytes(whole[:cut])
    assert projector_type(broken) == ""


def test_check_gguf_names_the_problem(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        check_gguf(tmp_path / "missing.gguf", "mmproj")
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04zip")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        check_gguf(tmp_path / "x.gguf", "mmproj")


def test_the_tensor_types_decide_whether_llama_cpp_repacks(tmp_path, tiny_models):
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quantize
    from loupe.backends.gguf_file import repacked, tensor_types

    assert tensor_types(tiny_models["smolvlm"].text_path) == {int(Q.F32)}
    assert not repacked(tiny_models["smolvlm"].text_path, "x86_64")
    path = tmp_path / "q4.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_tensor("w", quantize(np.zeros((8, 64), dtype=np.float32), Q.Q4_0), raw_dtype=Q.Q4_0)
    w.add_tensor("n", np.zeros(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert tensor_types(path) == {int(Q.Q4_0), int(Q.F32)}
    assert repacked(path, "x86_64") and repacked(path, "arm64")
    assert not repacked(path, "riscv64")  # not in the table: mapped as before
    assert tensor_types(tmp_path / "missing.gguf") == set()
