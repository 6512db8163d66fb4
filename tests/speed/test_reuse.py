"""Work not repeated, through the real llama.cpp on the tiny models: shared prompt prefix and image embeddings."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from loupe.api.pipeline import prepare
from loupe.backends.base import Generation, GenerationRequest
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.backends.reuse import EmbeddingCache, ImageUnit, reusable_prefix
from loupe.core.hardware import physical_cores
from loupe.core.images.load import load_image
from loupe.core.images.resize import image_tokens_for
from loupe.core.prompt import user_text
from loupe.core.tasks import builtin_task
from loupe.models.synthetic import SyntheticModel
from PIL import Image

from tests.conftest import FAMILIES


@pytest.fixture(params=FAMILIES)
def model(request: pytest.FixtureRequest, tiny_models: dict[str, SyntheticModel]) -> SyntheticModel:
    return tiny_models[request.param]


@pytest.fixture
def pictures(tmp_path: Path) -> list[Path]:
    """Two different photos-like images (gradients with a blob), as JPEG files."""
    out = []
    for i, color in enumerate([(200, 40, 40), (40, 40, 200)]):
        arr = np.linspace(0, 255, 160 * 120 * 3).reshape(120, 160, 3).astype(np.uint8)
        img = Image.fromarray(arr)
        img.paste(color, (20 + 30 * i, 20, 80 + 30 * i, 70))
        out.append(tmp_path / f"p{i}.jpg")
        img.save(out[-1], quality=90)
    return out


def _open(model: SyntheticModel) -> LlamaCppBackend:
    return LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1)


@pytest.fixture
def backend(model: SyntheticModel) -> Iterator[LlamaCppBackend]:
    b = _open(model)
    yield b
    b.close()


def _request(backend: LlamaCppBackend, path: Path, *, detail: str = "low") -> GenerationRequest:
    task = builtin_task("defects").with_options(detail=detail)
    prepared, _ = prepare([load_image(path)], task.options.detail)
    return GenerationRequest(
        text=user_text(task.instructions, task.schema, 1, allow_refusal=False),
        images=tuple(prepared),
        constraint=backend.compile(task.schema, allow_refusal=False),
        schema=task.schema,
        max_tokens=48,
        temperature=0.0,
        image_max_tokens=image_tokens_for(detail),
    )


def _same(a: Generation, b: Generation) -> None:
    assert a.text == b.text and a.stop == b.stop
    assert [s.prob for s in a.steps] == pytest.approx([s.prob for s in b.steps], abs=1e-6)


def test_second_image_of_a_batch_reuses_the_task_prefix_and_matches_a_cold_run(backend, model, pictures):
    first = backend.generate(_request(backend, pictures[0]))
    second = backend.generate(_request(backend, pictures[1]))
    t1, t2 = first.timings, second.timings
    assert t1["reused_tokens"] == 0 and t1["prefill_tokens"] == first.prompt_tokens
    # the chat header + instructions + schema (everything before the image) is not prefilled again
    assert t2["reused_tokens"] > 100
    assert t2["prefill_tokens"] == second.prompt_tokens - t2["reused_tokens"] < t1["prefill_tokens"]
    assert t2["image_chunks_encoded"] >= 1 and t2["image_chunks_cached"] == 0  # a new picture is encoded
    cold = _open(model)
    try:
        _same(second, cold.generate(_request(cold, pictures[1])))
        assert cold.generate(_request(cold, pictures[1])).timings["image_chunks_encoded"] == 0
    finally:
        cold.close()


def test_retry_on_the_same_image_skips_image_encoding(backend, pictures):
    request = _request(backend, pictures[0])
    first = backend.generate(request)
    again = backend.generate(request)
    assert first.timings["image_chunks_encoded"] >= 1 and first.timings["image_chunks_cached"] == 0
    assert again.timings["image_chunks_encoded"] == 0
    assert again.timings["prefill_tokens"] == 1  # only the last prompt token, whose logits start decoding
    assert again.text == first.text


def test_image_embeddings_survive_a_different_prompt_and_are_keyed_by_detail(backend, model, pictures):
    backend.generate(_request(backend, pictures[0]))
    backend.generate(_request(backend, pictures[1]))  # the KV cache now holds picture 1
    back = backend.generate(_request(backend, pictures[0]))
    assert back.timings["image_chunks_encoded"] == 0 and back.timings["image_chunks_cached"] >= 1
    other_detail = backend.generate(_request(backend, pictures[0], detail="high"))
    if model.family == "gemma3":
        # a fixed-size projector makes the same embeddings at any cap: the same pixels are found in the cache
        assert other_detail.timings["image_chunks_encoded"] == 0
    else:
        assert other_detail.timings["image_chunks_encoded"] >= 1  # same pixels, another image-token cap: own entry


def test_forget_makes_the_next_request_cold(backend, pictures):
    backend.generate(_request(backend, pictures[0]))
    backend.forget()
    again = backend.generate(_request(backend, pictures[0]))
    assert again.timings["reused_tokens"] == 0 and again.timings["image_chunks_encoded"] >= 1


def test_reusable_prefix_always_leaves_the_last_unit():
    img = ImageUnit("k", 0, 64)
    assert reusable_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert reusable_prefix([1, 2, img, 5], [1, 2, img, 5]) == 3
    assert reusable_prefix([1, 2, ImageUnit("other", 0, 64)], [1, 2, img, 5]) == 2
    assert reusable_prefix([], [1]) == 0 and reusable_prefix([1], []) == 0


def test_embedding_cache_is_an_lru_bounded_by_bytes():
    cache = EmbeddingCache(max_bytes=3 * 400)
    for k in "abc":
        cache.put(k, 0, np.ones(100, dtype=np.float32))
    assert cache.get("a", 0) is not None  # a is now the most recent
    cache.put("d", 0, np.ones(100, dtype=np.float32))
    assert cache.get("b", 0) is None and cache.get("a", 0) is not None and len(cache) == 3
    assert cache.nbytes == 1200
    cache.put("huge", 0, np.ones(1000, dtype=np.float32))  # bigger than the budget: not kept, nothing evicted
    assert cache.get("huge", 0) is None and len(cache) == 3
    off = EmbeddingCache(max_bytes=0)
    off.put("a", 0, np.ones(1, dtype=np.float32))
    assert len(off) == 0


def test_physical_cores_counts_smt_siblings_once(tmp_path, monkeypatch):
    for cpu, core in enumerate([0, 1, 0, 1]):
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{core}\n")
    monkeypatch.setattr("loupe.core.hardware.usable_cpus", lambda: {0, 1, 2, 3})
    assert physical_cores(tmp_path) == 2
    monkeypatch.setattr("loupe.core.hardware.usable_cpus", lambda: {0, 1, 2, 3, 4})  # cpu4 has no topology
    assert physical_cores(tmp_path) == 5


def test_the_tiling_is_recorded_with_the_resize_so_boxes_map_back(backend, model, tmp_path):
    from loupe.api import AnalyzeRequest, Engine
    from loupe.core.images.resize import DETAIL_IMAGE_TOKENS

    big = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 1200), (90, 120, 150)).save(big)
    result = Engine(backend).analyze(AnalyzeRequest((big,), builtin_task("describe").with_options(max_tokens=8)))
    steps = result.images[0].transforms
    assert steps[0] == "downscaled 1600x1200 -> 512x384"  # detail low: 512 px longest edge, aspect kept
    assert steps[1].startswith("llama.cpp mtmd: ")
    # the cap is recorded where it applies: gemma3's projector always makes one fixed-size tile
    assert (f"cap {DETAIL_IMAGE_TOKENS['low']} image tokens" in steps[1]) == (model.family != "gemma3")
    n_slices = int(steps[1].split(": ")[1].split(" ")[0])
    assert n_slices == (1 if model.family == "gemma3" else 5)  # gemma3: one tile; tiny idefics3: overview + 2x2


def test_sliding_window_model_reuses_the_prefix_correctly_after_a_long_answer(tiny_models, pictures):
    """Gemma 3's local layers attend to a window of positions: after an answer far past the window, the reused
    prefix must still give what a cold run gives (llama-cpp-python keeps a full-size window cache; with a
    trimmed one the backend checks the window is intact before reusing)."""
    model = tiny_models["gemma3"]
    warm, cold = _open(model), _open(model)
    try:
        long = dataclasses.replace(_request(warm, pictures[0]), max_tokens=900, schema={})
        long = dataclasses.replace(long, constraint=warm.compile({"type": "string"}, allow_refusal=False))
        assert len(warm.generate(long).steps) > 600  # positions well past the 512-token window
        after = warm.generate(_request(warm, pictures[1]))
        assert after.timings["reused_tokens"] > 100
        _same(after, cold.generate(_request(cold, pictures[1])))
    finally:
        warm.close()
        cold.close()


def test_the_projector_is_made_once_for_the_default_detail_and_never_again_when_its_size_is_fixed(model, pictures):
    """Remaking the mtmd context reloads the whole projector (seconds for Gemma 3's): the first `low` request uses
    the context made at load, and a fixed-size projector (gemma3) keeps its context for `high` too."""
    b = _open(model)
    try:
        made = b._mtmd
        low = b.generate(_request(b, pictures[0]))
        assert b._mtmd is made
        high = b.generate(_request(b, pictures[1], detail="high"))
        if model.family == "gemma3":
            assert b._projector == "gemma3" and b._mtmd is made
            assert low.image_tokens == high.image_tokens  # mtmd gives gemma3 a fixed token count either way
        else:
            assert b._projector == "idefics3" and b._mtmd is not made  # the cap changed: the context is remade
    finally:
        b.close()
