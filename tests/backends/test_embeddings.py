"""Image embeddings for search (issue 22): each analysed image's projector output, pooled during the analysis.

Through the real llama.cpp on the tiny models: one unit float32 vector per image, of the projector's output size
(the text model's embedding size), identical for the same pixels however they come back (another file, the
embedding cache, the KV prefix, a cold re-encode, the model process), different for different pictures, and made
without encoding anything more. The tiny models' weights are random, yet a resized, re-compressed copy stays far
closer to its original than an unrelated picture or noise (cosine > 0.99, and more than 0.1 above the others on
both families): asserted below, since it holds.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.backends.llama_mtmd import MtmdEncoder
from loupe.backends.reuse import pool_slice, pooled_vector
from loupe.backends.worker import WorkerBackend
from loupe.core.tasks import builtin_task
from loupe.core.types import Result, Status
from loupe.models.synthetic import SyntheticModel
from PIL import Image

from tests.conftest import FAMILIES, defects_request


@pytest.fixture(params=FAMILIES)
def model(request: pytest.FixtureRequest, tiny_models: dict[str, SyntheticModel]) -> SyntheticModel:
    return tiny_models[request.param]


@pytest.fixture
def backend(model: SyntheticModel) -> Iterator[LlamaCppBackend]:
    b = LlamaCppBackend(model.text_path, model.mmproj_path, model_id=model.name, n_threads=1)
    yield b
    b.close()


@pytest.fixture
def photos(tmp_path: Path) -> dict[str, Path]:
    """A photo-like picture, a copy of its file, a resized re-compressed copy, another picture, and noise."""
    arr = np.linspace(0, 255, 240 * 320 * 3).reshape(240, 320, 3).astype(np.uint8)
    img = Image.fromarray(arr)
    img.paste((200, 40, 40), (40, 40, 160, 140))
    other = Image.fromarray(np.ascontiguousarray(arr[:, ::-1]))
    other.paste((40, 200, 40), (150, 100, 300, 220))
    out = {name: tmp_path / name for name in ("a.jpg", "a_copy.jpg", "a_small.jpg", "b.jpg", "noise.png")}
    img.save(out["a.jpg"], quality=90)
    shutil.copy(out["a.jpg"], out["a_copy.jpg"])
    img.resize((160, 120), Image.Resampling.LANCZOS).save(out["a_small.jpg"], quality=60)
    other.save(out["b.jpg"], quality=90)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(out["noise.png"])
    return out


class CountingEncoder:
    """Counts the projector runs of a backend (MtmdEncoder.encode), the model still running for real."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = MtmdEncoder.encode

        def encode(encoder: MtmdEncoder, chunk: object) -> np.ndarray:
            self.calls += 1
            return real(encoder, chunk)

        monkeypatch.setattr(MtmdEncoder, "encode", encode)


def _analyse(engine: Engine, *paths: Path, detail: str = "low") -> Result:
    task = builtin_task("defects").with_options(detail=detail, max_tokens=24)
    result = engine.analyze(AnalyzeRequest(tuple(paths), task))
    assert result.status is not Status.ERROR  # truncated or not, the images were encoded and have their vectors
    return result


def _vec(result: Result, i: int = 0) -> np.ndarray:
    return np.frombuffer(result.embeddings[i].vector, dtype="<f4")


def test_every_analysed_image_gets_one_unit_vector_of_the_projector_output_size(backend, model, photos):
    result = _analyse(Engine(backend), photos["a.jpg"], photos["b.jpg"], detail="high")
    assert [e.image_id for e in result.embeddings] == [i.id for i in result.images] == ["img_01", "img_02"]
    for emb in result.embeddings:
        assert emb.model == result.model and emb.detail == "high"
        assert emb.dim == backend.model.n_embd  # the projector's output is the text model's embedding size
        vec = np.frombuffer(emb.vector, dtype="<f4")
        assert np.isfinite(vec).all() and np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)
    assert "embeddings" not in result.to_dict()  # the vector never reaches the JSON line


def test_the_vector_is_the_mean_of_the_projector_output_over_the_image_tokens(backend):
    rows = np.random.default_rng(0).standard_normal((10, backend.model.n_embd)).astype(np.float32)
    halves = [pool_slice(rows[:4].ravel(), backend.model.n_embd), pool_slice(rows[4:].ravel(), backend.model.n_embd)]
    mean = rows.astype(np.float64).mean(axis=0)
    got = np.frombuffer(pooled_vector(halves), dtype="<f4")
    assert got == pytest.approx((mean / np.linalg.norm(mean)).astype(np.float32), abs=1e-6)
    assert pooled_vector(halves) == pooled_vector(halves[::-1])  # slices add up exactly in any order
    assert pooled_vector([]) == b""


@pytest.mark.parametrize("detail", ["low", "high"])
def test_the_same_pixels_give_the_identical_vector_with_no_extra_encode(
    backend, photos, detail: str, monkeypatch: pytest.MonkeyPatch
):
    encodes = CountingEncoder(monkeypatch)
    first = backend.generate(defects_request(backend, photos["a.jpg"]))
    n_chunks = first.timings["image_chunks_encoded"]
    assert encodes.calls == n_chunks >= 1 and len(first.embeddings) == 1  # pooling adds no projector run
    engine = Engine(backend)
    runs = [_analyse(engine, photos["a.jpg"], detail=detail)]  # the KV prefix or the embedding cache
    runs.append(_analyse(engine, photos["a_copy.jpg"], detail=detail))  # the same pixels in another file
    runs.append(_analyse(engine, photos["b.jpg"], photos["a.jpg"], detail=detail))  # second in a request
    counted = encodes.calls
    runs.append(_analyse(engine, photos["a.jpg"], detail=detail))
    assert encodes.calls == counted  # kept: not encoded again, yet the vector is there
    backend.forget()  # cold: encoded afresh
    runs.append(_analyse(engine, photos["a.jpg"], detail=detail))
    assert encodes.calls > counted
    same = [runs[0].embeddings[0].vector] + [r.embeddings[-1].vector for r in runs[1:]]
    assert all(v == same[0] for v in same)
    assert runs[2].embeddings[0].vector != same[0]  # b.jpg


def test_a_cached_embedding_pools_to_the_same_vector_as_the_encode_that_made_it(backend, photos):
    request = defects_request(backend, photos["a.jpg"])
    first = backend.generate(request)
    backend.prefiller.pooled.clear()  # only the full embeddings are left: the vector is pooled again from them
    backend.prefiller.model.clear()
    backend.prefiller.kv = []
    again = backend.generate(request)
    assert again.timings["image_chunks_encoded"] == 0 and again.timings["image_chunks_cached"] >= 1
    assert again.embeddings == first.embeddings


def test_different_pictures_differ_and_a_resized_copy_is_nearer_than_another_picture(backend, photos):
    engine = Engine(backend)
    vecs = {name: _vec(_analyse(engine, path)) for name, path in photos.items()}
    assert not np.array_equal(vecs["a.jpg"], vecs["b.jpg"])
    assert not np.array_equal(vecs["a.jpg"], vecs["noise.png"])
    near = float(vecs["a.jpg"] @ vecs["a_small.jpg"])
    assert near > 0.99
    assert near > float(vecs["a.jpg"] @ vecs["b.jpg"]) + 0.1
    assert near > float(vecs["a.jpg"] @ vecs["noise.png"]) + 0.1


def test_the_vector_crosses_the_model_process_unchanged(tiny_models, photos):
    tiny = tiny_models["smolvlm"]
    local = LlamaCppBackend(tiny.text_path, tiny.mmproj_path, model_id="tiny-smolvlm", n_threads=1)
    try:
        here = _analyse(Engine(local), photos["a.jpg"])
    finally:
        local.close()
    worker = WorkerBackend(tiny.text_path, tiny.mmproj_path, model_id="tiny-smolvlm", n_threads=1)
    try:
        engine = Engine(worker)
        there = [_analyse(engine, photos["a.jpg"]), _analyse(engine, photos["a_copy.jpg"])]
    finally:
        worker.close()
    assert here.embeddings and [r.embeddings for r in there] == [here.embeddings] * 2
    assert there[0].embeddings[0].vector == here.embeddings[0].vector


def test_the_fake_backend_gives_no_embeddings(picture):
    from loupe.backends.fake import FakeBackend

    result = Engine(FakeBackend(['{"defects": []}'])).analyze(AnalyzeRequest((picture,), builtin_task("defects")))
    assert result.embeddings == ()
