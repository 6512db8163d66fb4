"""Memory and image tokens spent per request: the KV cache sized to the request, one view for a 1x1 idefics3 grid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.backends.reuse import ImageUnit, drop_duplicate_view
from loupe.core.errors import BackendError
from loupe.core.prompt import MEDIA, user_text
from PIL import Image

from tests.conftest import FAMILIES
from tests.speed.test_reuse import _request, _same


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    arr = np.linspace(0, 255, 160 * 120 * 3).reshape(120, 160, 3).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "p.jpg", quality=90)
    return tmp_path / "p.jpg"


def test_context_starts_small_grows_to_what_a_request_needs_and_stays_within_the_limit(tiny_models, picture):
    model = tiny_models["smolvlm"]
    grown = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1, n_ctx=8192)
    big = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1, n_ctx=4096, n_ctx_start=4096)
    capped = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1, n_ctx=2048)
    try:
        assert grown.n_ctx == 1024 and grown.capabilities.max_context == 8192 and big.n_ctx == 4096
        short = grown.generate(_request(grown, picture))
        assert grown.n_ctx == 1024  # prompt + image + 48 new tokens fit
        long = dataclasses.replace(_request(grown, picture), max_tokens=2000)
        answer = grown.generate(long)
        need = answer.prompt_tokens + 2000
        assert grown.n_ctx == 1 << (need - 1).bit_length() == 4096  # the next power of two, once
        again = grown.generate(_request(grown, picture))
        assert grown.n_ctx == 4096 and again.timings["reused_tokens"] > 100  # never shrinks; the prefix is kept
        # a grown context gives what one made that large from the start gives
        _same(short, big.generate(_request(big, picture)))
        _same(answer, big.generate(long))
        capped.generate(long)
        assert capped.n_ctx == 2048  # the backend's n_ctx is the limit
    finally:
        for b in (grown, big, capped):
            b.close()


def test_a_prompt_past_the_limit_is_refused_with_a_clear_error(tiny_models, picture):
    model = tiny_models["smolvlm"]
    b = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1, n_ctx=256)
    try:
        with pytest.raises(BackendError, match="does not fit the model's context of 256 tokens"):
            b.generate(_request(b, picture, detail="high"))
    finally:
        b.close()


def test_a_prompt_too_long_says_which_part_makes_it_so(tiny_models, picture):
    """A 100,000-value enum used to be blamed on the image detail; each cause is now named with its token counts."""
    model = tiny_models["smolvlm"]
    b = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1, n_ctx=1024)
    try:
        request = _request(b, picture)
        schema = {"type": "object", "properties": {"code": {"enum": [f"v{i}" for i in range(100_000)]}}}
        huge = dataclasses.replace(
            request,
            text=user_text("Read the code.", schema, 1, allow_refusal=False),
            constraint=b.compile(schema, allow_refusal=False),
            schema=schema,
        )
        with pytest.raises(BackendError) as info:
            b.generate(huge)
        assert "shorten the task's schema or instructions" in str(info.value) and "image detail" not in str(info.value)
        many = dataclasses.replace(request, images=request.images * 12, text=request.text + "\n" + MEDIA * 11)
        with pytest.raises(BackendError) as info:
            b.generate(many)
        assert "lower the image detail or send fewer images" in str(info.value)
    finally:
        b.close()


def test_a_one_tile_idefics3_image_is_one_view_not_the_tile_and_its_overview(tiny_models, picture):
    model = tiny_models["smolvlm"]
    b = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1)
    try:
        one = dataclasses.replace(_request(b, picture), image_max_tokens=1)  # any cap below 2 tiles: a 1x1 grid
        first = b.generate(one)
        tile = first.image_tokens
        assert first.timings["image_chunks_encoded"] == 1 and "1 slice(s)" in first.image_steps[one.images[0].id][0]
        grid = b.generate(_request(b, picture))  # detail low's cap on the tiny model: 2x2 tiles + overview
        assert grid.image_tokens == 5 * tile and grid.timings["image_chunks_encoded"] == 5
        again = b.generate(one)
        assert again.timings["image_chunks_encoded"] == 0 and again.image_tokens == tile
        _same(first, again)
    finally:
        b.close()


PIECES = {
    1: b"Look:",
    2: b"<fake_token_around_image>",
    3: b"<row_1_col_1>",
    4: b"\n\n",
    5: b"<global-img>",
    6: b"\n",
    7: b"<row_1_col_2>",
    8: b"<fake_token_",
    9: b"around_image>",
}


def test_drop_duplicate_view_cuts_the_tile_and_its_markup_only_for_a_1x1_grid():
    img = [ImageUnit("a", i, 4) for i in range(3)]
    planned = [("t0", [1, 2, 3]), ("i0", [img[0]]), ("t1", [4, 2, 5]), ("i1", [img[1]]), ("t2", [2, 1])]
    assert drop_duplicate_view(planned, PIECES.__getitem__) == [
        ("t0", [1]),
        ("t1", [2, 5]),
        ("i1", [img[1]]),
        ("t2", [2, 1]),
    ]
    split = [("t0", [1, 8, 9, 3]), ("i0", [img[0]]), ("t1", [4, 2, 5]), ("i1", [img[1]]), ("t2", [2])]
    assert drop_duplicate_view(split, PIECES.__getitem__)[0] == ("t0", [1])  # markup spelled by several tokens
    wide = [
        ("t0", [2, 3]),
        ("i0", [img[0]]),
        ("t1", [2, 7]),
        ("i1", [img[1]]),
        ("t2", [4, 2, 5]),
        ("i2", [img[2]]),
        ("t3", [2]),
    ]  # 1x2 grid: three views of one picture, nothing is a duplicate
    assert drop_duplicate_view(wide, PIECES.__getitem__) == wide
    other = [("t0", [1, 2, 3]), ("i0", [img[0]]), ("t1", [6, 2, 5]), ("i1", [img[1]]), ("t2", [2])]
    assert drop_duplicate_view(other, PIECES.__getitem__) == other  # not the layout we know: left alone


def test_an_image_decoded_both_ways_gets_a_micro_batch_that_holds_it(tiny_models, tmp_path):
    """Gemma 3 attends over its image tokens non-causally: llama.cpp aborts the whole process (GGML_ASSERT) when
    they do not fit in one micro-batch. Real Gemma 3 has 256 image tokens against our default n_ubatch of 128, so
    the context's micro-batch grows to the image; a causal model (SmolVLM) keeps its small one."""
    from loupe.api import AnalyzeRequest, Engine
    from loupe.core.tasks import builtin_task

    picture = tmp_path / "p.png"
    Image.new("RGB", (160, 120), (90, 120, 150)).save(picture)
    for family in FAMILIES:
        backend = LlamaCppBackend(
            tiny_models[family].text_path, tiny_models[family].mmproj_path, n_threads=1, n_ubatch=4
        )
        with Engine(backend) as engine:
            result = engine.analyze(AnalyzeRequest((picture,), builtin_task("describe").with_options(max_tokens=8)))
            assert result.status.value in ("ok", "truncated", "invalid")
            ubatch = backend._llm.context_params.n_ubatch
            if family == "gemma3":
                assert result.tokens.image > 4 and ubatch >= result.tokens.image
            else:
                assert ubatch == 4
