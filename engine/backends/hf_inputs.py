"""Prompt, pixels and vocabulary for backends that run Hugging Face-format models (MLX, ONNX).

The model directory's own processor (transformers, PIL image backend: no torch) renders the chat
template and expands each image into its image tokens, exactly as the model was trained; the tokenizer
gives LLGuidance its vocabulary and the decode loop each token's bytes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from loupe.backends.base import GenerationRequest
from loupe.backends.decode import TokenVocab, eog_set
from loupe.core.constrain.llguidance import LLGuidanceCompiler
from loupe.core.errors import BackendError, ModelLoadError
from loupe.core.prompt import MEDIA


def check_model_dir(path: Path, needs: tuple[str, ...] = ("config.json",)) -> None:
    """Refuse a missing directory or one without the files a Hugging Face model has, naming the fix."""
    if not path.exists():
        raise ModelLoadError(f"model directory not found: {path} (check the path, or run `loupe models list`)")
    if not path.is_dir():
        raise ModelLoadError(f"not a model directory: {path} (MLX and ONNX models are directories)")
    missing = [n for n in needs if not (path / n).is_file()]
    if missing:
        raise ModelLoadError(f"{path} is not a Hugging Face model directory: missing {', '.join(missing)}")


def load_processor(path: Path) -> Any:
    """The model's processor (tokenizer + image processor + chat template)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # else "PyTorch was not found" on every load
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load the processor in {path}: {exc}") from None
    template = path / "chat_template.jinja"
    if getattr(processor, "chat_template", None) is None and template.is_file():
        processor.chat_template = template.read_text()  # processors mlx-vlm registers skip this file
    if getattr(processor, "chat_template", None) is None:
        raise ModelLoadError(f"{path} has no chat template (chat_template.jinja or in processor_config.json)")
    return processor


def image_token_id(processor: Any, config: dict[str, Any]) -> int:
    """The id of the placeholder token each image feature replaces."""
    for key in ("image_token_id", "image_token_index"):
        if isinstance(config.get(key), int):
            return int(config[key])
    token = getattr(processor, "image_token", None)
    if token is None:
        raise ModelLoadError("the model config names no image token (image_token_id / image_token_index)")
    return int(processor.tokenizer.convert_tokens_to_ids(token))


def render(processor: Any, text: str) -> str:
    """The full prompt: the chat template around one user message, an image item at each MEDIA marker."""
    content: list[dict[str, str]] = []
    for i, part in enumerate(text.split(MEDIA)):
        if i:
            content.append({"type": "image"})
        if part:
            content.append({"type": "text", "text": part})
    messages = [{"role": "user", "content": content}]
    return str(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def encode(processor: Any, prompt: str, request: GenerationRequest) -> dict[str, np.ndarray]:
    """Token ids and pixel tensors (numpy) for the prompt and the request's images."""
    images = [img.image if img.image.mode == "RGB" else img.image.convert("RGB") for img in request.images]
    per_tile = getattr(processor, "image_seq_len", None)  # idefics3 / SmolVLM: tokens per tile
    image_processor = getattr(processor, "image_processor", None)
    split = getattr(image_processor, "do_image_splitting", None)
    if split and request.image_max_tokens and per_tile and request.image_max_tokens < 3 * per_tile:
        image_processor.do_image_splitting = False  # the smallest split is 2 tiles + overview: one view instead
    try:
        out = processor(text=prompt, images=images or None, return_tensors="np")
    except (ValueError, TypeError) as exc:
        raise BackendError(f"the model's processor refused the input ({len(images)} image(s)): {exc}") from None
    finally:
        if split is not None:
            image_processor.do_image_splitting = split
    return {k: np.asarray(v) for k, v in out.items()}


def prepare(processor: Any, request: GenerationRequest, timings: dict[str, float]) -> dict[str, np.ndarray]:
    """`encode(render(...))` for the request, timed into timings["preprocess_ms"]."""
    t0 = time.perf_counter()
    inputs = encode(processor, render(processor, request.text), request)
    timings["preprocess_ms"] = (time.perf_counter() - t0) * 1000
    return inputs


def vocabulary(processor: Any, config: dict[str, Any]) -> tuple[LLGuidanceCompiler, TokenVocab]:
    """The LLGuidance compiler for this tokenizer, and the loop's view of it (bytes per token, end tokens)."""
    from llguidance.hf import from_tokenizer

    tok = processor.tokenizer
    eos: list[int | None] = [tok.eos_token_id]
    for source in (config, config.get("text_config") or {}):
        value = source.get("eos_token_id")
        eos += value if isinstance(value, list) else [value]
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>") if "<end_of_turn>" in tok.get_vocab() else None
    eog = eog_set([*eos, end_of_turn])
    n_vocab = len(tok)
    try:
        lltok = from_tokenizer(tok, n_vocab=n_vocab, eos_token=sorted(eog) or None)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"LLGuidance cannot use this tokenizer: {exc}") from None
    pieces: dict[int, bytes] = {}

    def piece(token: int) -> bytes:
        got = pieces.get(token)
        if got is None:
            got = pieces[token] = lltok.decode_bytes([token])
        return got

    return LLGuidanceCompiler(lltok), TokenVocab(n_vocab=n_vocab, piece=piece, eog=eog)
