"""The synthetic tiny VLMs load in real llama.cpp + mtmd, take an image, and decode."""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

import numpy as np
import pytest
from loupe.backends.llama_cpu import load_llama
from loupe.models.synthetic import SPECS, SyntheticModel, build
from PIL import Image

llama_cpp = pytest.importorskip("llama_cpp")
mtmd = pytest.importorskip("llama_cpp.mtmd_cpp")
jinja_sandbox = pytest.importorskip("jinja2.sandbox")

TINY = ["tiny-smolvlm", "tiny-gemma3"]


def _render(template: str, messages: list[dict], bos: str) -> str:
    # the same Jinja settings as transformers / llama-cpp-python's chat handlers
    env = jinja_sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True, bos_token=bos, eos_token="")


def _run_image_prompt(model: SyntheticModel, n_decode: int = 20) -> dict:
    # one thread: llama.cpp's spinning thread pool crawls when a shared CI box has no idle core
    # weight buffers as the product chooses them (loupe.backends.llama_cpu): on an AMX CPU, not the AMX one
    llm = load_llama(model_path=str(model.text_path), n_ctx=4096, n_threads=1, verbose=False)
    params = mtmd.mtmd_context_params_default()
    params.use_gpu = False
    params.n_threads = 1
    params.print_timings = False
    ctx = mtmd.mtmd_init_from_file(str(model.mmproj_path).encode(), llm.model, params)
    assert ctx is not None
    chunks = bitmap = None
    try:
        assert mtmd.mtmd_support_vision(ctx)
        marker = mtmd.mtmd_default_marker().decode()
        bos = llm.detokenize([llm.token_bos()], special=True).decode()
        content = [{"type": "text", "text": marker}, {"type": "text", "text": "Describe the image as JSON."}]
        prompt = _render(llm.metadata["tokenizer.chat_template"], [{"role": "user", "content": content}], bos)

        pixels = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
        data = Image.fromarray(pixels, "RGB").tobytes()
        bitmap = mtmd.mtmd_bitmap_init(200, 150, (ctypes.c_uint8 * len(data)).from_buffer_copy(data))
        text = mtmd.mtmd_input_text()
        encoded = prompt.encode()
        text.text, text.text_len = encoded, len(encoded)
        text.add_special = False  # both templates emit their own BOS
        text.parse_special = True
        chunks = mtmd.mtmd_input_chunks_init()
        assert mtmd.mtmd_tokenize(ctx, chunks, ctypes.byref(text), (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap), 1) == 0

        image_tokens = []
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                image_tokens.append(mtmd.mtmd_input_chunk_get_n_tokens(chunk))

        start = time.perf_counter()
        n_past = llama_cpp.llama_pos(0)
        assert (
            mtmd.mtmd_helper_eval_chunks(ctx, llm._ctx.ctx, chunks, 0, 0, llm.n_batch, True, ctypes.byref(n_past)) == 0
        )
        n_vocab = llm.n_vocab()
        decoded, all_finite = [], True
        for _ in range(n_decode):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))
            all_finite &= bool(np.isfinite(logits).all())
            token = int(logits.argmax())
            decoded.append(token)
            batch = llama_cpp.llama_batch_get_one((llama_cpp.llama_token * 1)(token), 1)
            assert llama_cpp.llama_decode(llm._ctx.ctx, batch) == 0
        return {
            "prompt": prompt,
            "image_tokens": image_tokens,
            "n_past": n_past.value,
            "decoded": decoded,
            "finite": all_finite,
            "seconds": time.perf_counter() - start,
            "n_vocab": n_vocab,
        }
    finally:
        if chunks is not None:
            mtmd.mtmd_input_chunks_free(chunks)
        if bitmap is not None:
            mtmd.mtmd_bitmap_free(bitmap)
        mtmd.mtmd_free(ctx)
        llm.close()


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_encodes_image_and_decodes(name: str, tmp_path: Path) -> None:
    model = build(name, tmp_path)
    result = _run_image_prompt(model)
    assert result["image_tokens"], "no image chunk"
    assert all(n > 0 for n in result["image_tokens"])
    assert result["image_tokens"][0] == SPECS[name].image_tokens_per_tile
    assert result["finite"]
    assert len(result["decoded"]) == 20
    assert all(0 <= t < result["n_vocab"] for t in result["decoded"])
    assert result["n_vocab"] < 2000  # small vocab keeps sampling cheap


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("text_type", ["q8_0", "f16"])
def test_tiny_model_quantized_types_load(name: str, text_type: str, tmp_path: Path) -> None:
    model = build(name, tmp_path, text_type=text_type, mmproj_type="f16")
    result = _run_image_prompt(model, n_decode=3)
    assert result["image_tokens"] and result["finite"]


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_q8_0_projector_loads_and_encodes(name: str, tmp_path: Path) -> None:
    """A Q8_0 mmproj (as ggml-org publishes them; embeddings and norms stay F32) encodes the image to finite values."""
    model = build(name, tmp_path, text_type="f16", mmproj_type="q8_0")
    result = _run_image_prompt(model, n_decode=3)
    assert result["image_tokens"][0] == SPECS[name].image_tokens_per_tile and result["finite"]


def test_chat_templates_render_expected_turns(tmp_path: Path) -> None:
    for name, expected in [
        ("tiny-smolvlm", "<|im_start|>User: hi<end_of_utterance>\nAssistant:"),
        ("tiny-gemma3", "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"),
    ]:
        model = build(name, tmp_path)
        llm = llama_cpp.Llama(model_path=str(model.text_path), n_ctx=256, verbose=False, vocab_only=True)
        template = llm.metadata["tokenizer.chat_template"]
        bos = llm.detokenize([llm.token_bos()], special=True).decode()
        as_string = _render(template, [{"role": "user", "content": "hi"}], bos)
        as_parts = _render(template, [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], bos)
        assert as_string == as_parts == expected
        # special tokens are single control tokens; eos ends generation
        eos = llm.token_eos()
        assert llm.detokenize([eos], special=True).decode() in {"<end_of_utterance>", "<eos>"}
        llm.close()


def test_tiny_files_are_small_and_builds_are_reused_and_deterministic(tmp_path: Path) -> None:
    for name in TINY:
        start = time.perf_counter()
        first = build(name, tmp_path / "a")
        elapsed = time.perf_counter() - start
        assert elapsed < 5.0  # ~0.05 s on an idle machine
        for path in (first.text_path, first.mmproj_path):
            assert 10_000 < path.stat().st_size < 3_000_000
        assert not list((tmp_path / "a").glob("*.part"))

        mtime = first.text_path.stat().st_mtime_ns
        again = build(name, tmp_path / "a")  # reused, not rewritten
        assert again == first
        assert first.text_path.stat().st_mtime_ns == mtime

        other_dir = build(name, tmp_path / "b")
        assert other_dir.text_path.read_bytes() == first.text_path.read_bytes()
        assert other_dir.mmproj_path.read_bytes() == first.mmproj_path.read_bytes()

        reseeded = build(name, tmp_path / "b", seed=1)  # different seed -> rebuilt in place
        assert reseeded.text_path.read_bytes() != first.text_path.read_bytes()
