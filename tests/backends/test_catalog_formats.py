"""The catalog's format field: MLX / ONNX directory entries beside the GGUF pairs, validated on load."""

from __future__ import annotations

from pathlib import Path

import pytest
from loupe.models.catalog import CatalogError, load_catalog
from loupe.models.hf_fetch import pin, verify_dir

from tests.backends.conftest import TINY


def test_packaged_catalog_has_onnx_and_mlx_entries_beside_the_gguf_ones():
    catalog = load_catalog()
    onnx = {n: e for n, e in catalog.other_formats.items() if e.format == "onnx"}
    mlx = {n: e for n, e in catalog.other_formats.items() if e.format == "mlx"}
    assert {e.quantization for e in onnx.values()} >= {"q4", "q8", "fp16"}
    assert {e.family for e in mlx.values()} == {"smolvlm", "gemma3"}
    assert all(e.repo_id.startswith("mlx-community/") for e in mlx.values())
    assert all(e.format == "gguf" for e in catalog)  # the store still sees GGUF pairs only
    assert catalog.get_any("smolvlm-256m-onnx-q8").files[-1] == "onnx/decoder_model_merged_quantized.onnx"
    assert catalog.get_any("smolvlm-256m").format == "gguf"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('format = "safetensors"\nfiles = ["*"]\n', "format 'safetensors' is not one of gguf, mlx, onnx"),
        ('format = "onnx"\nquantization = "q4"\n', "needs `files = \\[...\\]`"),
        ('format = "onnx"\nquantization = "int3"\nfiles = ["*"]\n', "quantization must be one of"),
        ('format = "mlx"\nfiles = ["*"]\ntext_file = "t.gguf"\n', "text_file/mmproj_file are for gguf entries"),
    ],
)
def test_bad_directory_entries_are_refused(tmp_path: Path, extra: str, message: str):
    path = tmp_path / "catalog.toml"
    path.write_text(
        'default = "g"\n[models.g]\ndisplay_name = "G"\nfamily = "smolvlm"\nsource = "synthetic"\n'
        'synthetic = "tiny-smolvlm"\n[models.x]\ndisplay_name = "X"\nfamily = "smolvlm"\n'
        'source = "huggingface"\nrepo_id = "a/b"\n' + extra
    )
    with pytest.raises(CatalogError, match=message):
        load_catalog(path)


def test_directory_models_are_pinned_on_first_use_and_verified(tmp_path: Path):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(TINY / "smolvlm" / "hf", copy)
    digests = pin(copy)
    assert "onnx/decoder_model_merged.onnx" in digests and verify_dir(copy) == []
    (copy / "config.json").write_text("{}")
    assert verify_dir(copy) == ["config.json"]
