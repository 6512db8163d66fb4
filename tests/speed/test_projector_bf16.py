"""BF16 copies of the vision projector: the conversion, its cache, and the real llama.cpp loading and encoding them.

The tiny models' projectors are written in F16 here (the catalog's are F16 or Q8_0; the tiny rows are too short for
Q8_0 blocks), so there are matrix weights to convert."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends import projector_bf16
from loupe.backends.gguf_file import projector_type, tensor_kinds
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.backends.projector_bf16 import ENV, ProjectorCache, convert, convertible
from loupe.core.tasks import builtin_task
from loupe.models.synthetic import SyntheticModel, build

from tests.conftest import FAMILIES

F16, BF16 = int(gguf.GGMLQuantizationType.F16), int(gguf.GGMLQuantizationType.BF16)


@pytest.fixture(scope="module")
def f16_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SyntheticModel]:
    out = tmp_path_factory.mktemp("f16-projectors")
    return {fam: build(f"tiny-{fam}", out, mmproj_type="f16") for fam in FAMILIES}


@pytest.fixture(params=FAMILIES)
def model(request: pytest.FixtureRequest, f16_models: dict[str, SyntheticModel]) -> SyntheticModel:
    return f16_models[request.param]


def _tensors(path: Path) -> dict[str, tuple[int, np.ndarray]]:
    reader = gguf.GGUFReader(path)
    return {t.name: (int(t.tensor_type), gguf.quants.dequantize(t.data, t.tensor_type)) for t in reader.tensors}


def test_matrix_weights_become_bf16_and_everything_else_is_kept(model, tmp_path):
    copy = tmp_path / "copy.gguf"
    convert(model.mmproj_path, copy)
    before, after = _tensors(model.mmproj_path), _tensors(copy)
    assert before.keys() == after.keys()
    converted = 0
    for name, (ttype, values) in before.items():
        new_type, new_values = after[name]
        assert new_values.shape == values.shape, name
        if ttype == F16 and values.ndim == 2:
            converted += 1
            assert new_type == BF16, name
            # BF16 keeps 8 significant bits: each value within 2^-8 of itself
            np.testing.assert_allclose(new_values, values, rtol=2**-8, atol=1e-30, err_msg=name)
        else:
            assert new_type == ttype, name
            np.testing.assert_array_equal(new_values, values, err_msg=name)
    assert converted > 0
    assert projector_type(copy) == projector_type(model.mmproj_path) != ""
    assert not list(tmp_path.glob("*.part"))


def test_llama_cpp_loads_the_copy_and_encodes_images_like_the_original(model, picture, tmp_path):
    cache = ProjectorCache(tmp_path / "projectors")
    task = builtin_task("defects").with_options(max_tokens=16, retries=0)
    embeddings = []
    for projectors in (None, cache):
        backend = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1, projectors=projectors)
        with Engine(backend) as engine:
            result = engine.analyze(AnalyzeRequest((str(picture),), task))
            assert result.status.value in ("ok", "invalid", "truncated"), result.error
            items = sorted(backend._embeds._items.items())  # (image key, slice) -> projector output
            assert items
            embeddings.append(np.concatenate([e for _, e in items]).astype(np.float64))
        if projectors is None:
            assert backend.mmproj_file == model.mmproj_path
        else:
            assert backend.mmproj_file.parent == cache.root
            assert BF16 in {t for t, _ in tensor_kinds(backend.mmproj_file)}
    plain, bf16 = embeddings
    cos = plain @ bf16 / np.linalg.norm(plain) / np.linalg.norm(bf16)
    assert cos > 0.999, cos


def test_a_copy_is_made_once_and_reused(model, tmp_path, monkeypatch):
    cache = ProjectorCache(tmp_path / "projectors")
    copy = cache.path_for(model.mmproj_path)
    assert copy != model.mmproj_path and copy.is_file()

    def refuse(*_args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(projector_bf16, "convert", refuse)
    assert cache.path_for(model.mmproj_path) == copy
    assert copy.stat().st_size > 0 and list(cache.root.iterdir()) == [copy]
    # a changed source (another download) gets its own copy
    model.mmproj_path.touch()
    assert cache.key(model.mmproj_path) != copy.name.removesuffix("-bf16.gguf")


def test_a_projector_with_nothing_to_convert_is_used_as_it_is(tiny_models, tmp_path):
    f32 = tiny_models["smolvlm"].mmproj_path
    assert not convertible(f32)
    cache = ProjectorCache(tmp_path / "projectors")
    assert cache.path_for(f32) == f32
    assert not (tmp_path / "projectors").exists()


def test_a_damaged_copy_is_dropped_and_the_original_loaded(model, tmp_path):
    cache = ProjectorCache(tmp_path / "projectors")
    copy = cache.root / (cache.key(model.mmproj_path) + "-bf16.gguf")
    cache.root.mkdir(parents=True)
    copy.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)  # a header that cannot be parsed
    backend = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1, projectors=cache)
    try:
        assert backend.mmproj_file == model.mmproj_path
        assert not copy.exists()
    finally:
        backend.close()


def test_an_unwritable_cache_means_the_original(model, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    assert ProjectorCache(blocker / "projectors").path_for(model.mmproj_path) == model.mmproj_path


def test_old_copies_are_removed_past_the_size_bound(f16_models, tmp_path):
    a, b = (f16_models[fam].mmproj_path for fam in FAMILIES)
    cache = ProjectorCache(tmp_path / "projectors", max_bytes=1)
    first = cache.path_for(a)
    second = cache.path_for(b)
    assert second.is_file() and not first.exists()


def test_the_default_follows_the_environment_and_the_cpu(monkeypatch, tmp_path):
    monkeypatch.setattr(projector_bf16, "cpu_has_bf16", lambda: True)
    monkeypatch.setenv(ENV, str(tmp_path / "here"))
    cache = ProjectorCache.default()
    assert cache is not None and cache.root == tmp_path / "here"
    monkeypatch.setenv(ENV, "off")
    assert ProjectorCache.default() is None
    monkeypatch.delenv(ENV)
    cache = ProjectorCache.default()
    assert cache is not None and cache.root.name == "projectors"
    monkeypatch.setattr(projector_bf16, "cpu_has_bf16", lambda: False)
    assert ProjectorCache.default() is None


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads Linux's CPU flags")
def test_bf16_is_only_claimed_on_a_cpu_that_has_it():
    flags = Path("/proc/cpuinfo").read_text().split()
    if projector_bf16.cpu_has_bf16():
        assert "avx512_bf16" in flags
