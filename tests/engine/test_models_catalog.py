"""The model catalog: the shipped entries, unknown names, and malformed entries refused with a clear error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from loupe.models.catalog import CatalogError, UnknownModelError, load_catalog

from tests.engine.model_files import catalog_toml


def test_catalog_has_the_four_real_models_and_two_synthetic_ones() -> None:
    catalog = load_catalog()
    assert set(catalog.names()) == {
        "smolvlm-256m",
        "smolvlm-500m",
        "smolvlm2-2.2b",
        "gemma3-4b",
        "synthetic-smolvlm",
        "synthetic-gemma3",
    }
    assert catalog.default == "smolvlm-256m"
    small = catalog.get("smolvlm-256m")
    assert (small.repo_id, small.text_file, small.mmproj_file) == (
        "ggml-org/SmolVLM-256M-Instruct-GGUF",
        "SmolVLM-256M-Instruct-Q8_0.gguf",
        "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf",
    )
    gemma = catalog.get("gemma3-4b")
    assert (gemma.family, gemma.text_file, gemma.mmproj_file) == (
        "gemma3",
        "gemma-3-4b-it-Q4_K_M.gguf",
        "mmproj-model-f16.gguf",
    )
    assert gemma.gated and gemma.license == "Gemma" and "accept" in gemma.note
    for name in ("smolvlm-256m", "smolvlm-500m", "smolvlm2-2.2b"):
        entry = catalog.get(name)
        assert entry.family == "smolvlm" and entry.license == "Apache-2.0" and entry.repo_id.startswith("ggml-org/")
        assert entry.approx_size > 100_000_000
    for name, builder, family in (
        ("synthetic-smolvlm", "tiny-smolvlm", "smolvlm"),
        ("synthetic-gemma3", "tiny-gemma3", "gemma3"),
    ):
        entry = catalog.get(name)
        assert (entry.source, entry.synthetic, entry.family) == ("synthetic", builder, family)
        assert entry.note == "random weights, output meaningless"


def test_catalog_get_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match=r"known models: smolvlm-256m, .*gemma3-4b"):
        load_catalog().get("llava")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"text_sha256": "abc"}, "64 lowercase hex"),
        ({"color": "red"}, "unknown keys color"),
        ({"family": "llava"}, "family 'llava'"),
        ({"repo_id": ""}, "missing repo_id"),
    ],
)
def test_catalog_refuses_malformed_entries(tmp_path: Path, change: dict[str, str], message: str) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(catalog_toml("x/y", "t.gguf", "m.gguf", **change))
    with pytest.raises(CatalogError, match=re.escape(message)):
        load_catalog(path)
