"""Build tiny random-weight Hugging Face-format VLMs (SmolVLM/idefics3, Gemma 3) plus ONNX exports and goldens.

Needs torch + transformers + onnx/onnxscript (build-time only): `python -m loupe.models.hf_synthetic OUT_DIR`.
The outputs are committed under tests/backends/tiny/ so the tests and CI need neither torch nor a download.
For each model NAME it writes:
  NAME/hf/      config.json, model.safetensors, tokenizer + processor files (what transformers / mlx-vlm load)
  NAME/hf/onnx/ vision_encoder.onnx, embed_tokens.onnx, decoder_model_merged.onnx (onnx-community layout; SmolVLM only)
  NAME/golden.json, golden_logits.npy, golden_text_logits.npy   first-step logits from transformers for
                GOLDEN_TEXT + golden_image(), and for GOLDEN_TEXT alone
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from loupe.models.synthetic_vocab import SMOLVLM_CHAT_TEMPLATE
from PIL import Image, ImageDraw

GOLDEN_TEXT = "Describe the defects in this image as JSON."
SEED = 1234
VOCAB_SIZE = 512
_CORPUS = [
    '{"defects":[{"label":"scratch","box_2d":[10,20,30,40],"severity":"minor"}],"ok":false}',
    '{"label":"dent","confidence":0.9,"notes":null,"count":3,"items":["a","b"],"text":"hello world"}',
    "Describe the defects in this image as JSON. Return the product, the price and the date.",
    'User: Assistant: true false null 0123456789 , : { } [ ] " REFUSE: no image',
]
SMOLVLM_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<end_of_utterance>",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    *[f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)],
]
GEMMA3_SPECIALS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant'"
    " else message['role']) + '\n' }}{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def golden_image() -> Image.Image:
    """A deterministic 80x56 test picture (not square, so tiling and resizing both matter)."""
    img = Image.new("RGB", (80, 56), (200, 190, 170))
    draw = ImageDraw.Draw(img)
    draw.rectangle((5, 5, 40, 30), fill=(40, 90, 160))
    draw.line((0, 55, 79, 0), fill=(250, 20, 20), width=3)
    draw.ellipse((50, 20, 75, 50), outline=(10, 10, 10), width=2)
    return img


def _tokenizer(specials: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok


def _seed() -> None:
    import torch

    torch.manual_seed(SEED)
    np.random.seed(SEED)


# HuggingFaceTB/SmolVLM-256M-Instruct's dimensions (as loupe.models.synthetic's "smolvlm-256m" GGUF), for bench/
SMOLVLM_256M = {
    "vision": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 512,
        "patch_size": 16,
        "initializer_range": 0.02,
    },
    "text": {
        "vocab_size": 49280,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "initializer_range": 0.02,
        "max_position_embeddings": 8192,
    },
    "scale_factor": 4,
    "image_seq_len": 64,
    "longest_edge": 2048,
    "tile": 512,
}


def build_smolvlm(out: Path, dims: dict[str, Any] | None = None) -> Any:
    """Tiny Idefics3 (SmolVLM): 32 px tiles of 4x4 patches, pixel-shuffle 2 -> 4 tokens per tile.

    `dims` (e.g. SMOLVLM_256M) overrides the sizes, for benchmarks: same tokenizer, real-size weights."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        PreTrainedTokenizerFast,
    )

    _seed()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer(SMOLVLM_SPECIALS),
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<image>", "<end_of_utterance>", "<|endoftext|>")}
    dims = dims or {}
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
        "initializer_range": 0.2,
        **dims.get("vision", {}),
    }
    text = {
        "model_type": "llama",
        "vocab_size": len(tok),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "rope_theta": 100000.0,
        "rms_norm_eps": 1e-5,
        "initializer_range": 0.2,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": ids["<end_of_utterance>"],
        "pad_token_id": ids["<|endoftext|>"],
        **dims.get("text", {}),
    }
    config = Idefics3Config(
        image_token_id=ids["<image>"],
        scale_factor=dims.get("scale_factor", 2),
        tie_word_embeddings=False,
        vision_config=vision,
        text_config=text,
        pad_token_id=ids["<|endoftext|>"],
    )
    model = Idefics3ForConditionalGeneration(config).eval()
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": dims.get("longest_edge", 64)}, max_image_size={"longest_edge": dims.get("tile", 32)}
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tok,
        image_seq_len=dims.get("image_seq_len", 4),
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    _save(out, model, processor)
    return model, processor


def build_gemma3(out: Path) -> Any:
    """Tiny Gemma 3: 32 px images of 8x8 patches (4 px), average-pooled to 2x2 = 4 image tokens."""
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
        PreTrainedTokenizerFast,
    )

    _seed()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer(GEMMA3_SPECIALS),
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in GEMMA3_SPECIALS}
    config = Gemma3Config(
        image_token_index=ids["<image_soft_token>"],
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        mm_tokens_per_image=4,
        tie_word_embeddings=True,
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 4,
            "vision_use_head": False,
        },
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 2048,
            "sliding_window": 512,
            "sliding_window_pattern": 2,
            "layer_types": ["sliding_attention", "full_attention"],
            "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0,
            "initializer_range": 0.2,
            "query_pre_attn_scalar": 16,
            "bos_token_id": ids["<bos>"],
            "eos_token_id": ids["<eos>"],
            "pad_token_id": ids["<pad>"],
        },
        initializer_range=0.2,
        pad_token_id=ids["<pad>"],
        bos_token_id=ids["<bos>"],
        eos_token_id=ids["<eos>"],
    )
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():  # zero-initialized upstream: the model would ignore images
        proj = model.model.multi_modal_projector.mm_input_projection_weight
        proj.copy_(torch.randn(proj.shape) * 0.2)
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": 32, "width": 32}),
        tokenizer=tok,
        image_seq_length=4,
        chat_template=GEMMA3_CHAT_TEMPLATE,
    )
    _save(out, model, processor)
    return model, processor


def _save(out: Path, model: Any, processor: Any) -> None:
    hf = out / "hf"
    shutil.rmtree(hf, ignore_errors=True)
    model.save_pretrained(hf)
    processor.save_pretrained(hf)
    _mlx_compat(hf / "config.json")
    _hub_weight_names(hf / "model.safetensors")


def _hub_weight_names(path: Path) -> None:
    """Name the SigLIP tower as the published checkpoints do (`vision_tower.vision_model.*`): transformers 5
    saves `vision_tower.*`, which it reads either way but mlx-vlm does not."""
    from safetensors.numpy import load_file, save_file

    weights = load_file(path)
    renamed = {
        re.sub(r"^((?:model\.)?vision_tower\.)(?!vision_model\.)", r"\1vision_model.", k): v for k, v in weights.items()
    }
    if renamed != weights:
        save_file(renamed, path, metadata={"format": "pt"})


def _mlx_compat(path: Path) -> None:
    """Add the pre-transformers-5 keys mlx-vlm reads (transformers itself ignores them)."""
    config = json.loads(path.read_text())
    text = config["text_config"]
    rope = text.get("rope_parameters", {})
    if "rope_theta" in rope:
        text["rope_theta"] = rope["rope_theta"]
    else:  # Gemma 3: per attention kind
        text["rope_theta"] = rope["full_attention"]["rope_theta"]
        text["rope_global_base_freq"] = text["rope_theta"]
        text["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
        text["mm_tokens_per_image"] = config["mm_tokens_per_image"]
    config["hidden_size"] = text["hidden_size"]
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def messages(text: str, n_images: int = 1) -> list[dict[str, Any]]:
    """One user message with the images first, then the text (the layout the goldens use)."""
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]
    return [{"role": "user", "content": content}]


def golden(out: Path, model: Any, processor: Any) -> None:
    """First-step logits and the image-token count for GOLDEN_TEXT + golden_image(), and for GOLDEN_TEXT alone."""
    import torch

    prompt = processor.apply_chat_template(messages(GOLDEN_TEXT), add_generation_prompt=True)
    inputs = processor(text=prompt, images=[golden_image()], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1].float().numpy()
    ids = inputs["input_ids"][0].tolist()
    image_id = model.config.image_token_id if hasattr(model.config, "image_token_id") else None
    image_id = image_id if image_id is not None else model.config.image_token_index
    np.save(out / "golden_logits.npy", logits.astype(np.float32))
    text_prompt = processor.apply_chat_template(messages(GOLDEN_TEXT, 0), add_generation_prompt=True)
    text_inputs = processor(text=text_prompt, return_tensors="pt")
    with torch.no_grad():
        text_logits = model(**text_inputs).logits[0, -1].float().numpy()
    np.save(out / "golden_text_logits.npy", text_logits.astype(np.float32))
    info = {
        "text": GOLDEN_TEXT,
        "prompt": prompt,
        "input_ids": ids,
        "image_tokens": ids.count(image_id),
        "argmax": int(np.argmax(logits)),
        "pixel_values_shape": list(inputs["pixel_values"].shape),
    }
    (out / "golden.json").write_text(json.dumps(info, indent=1) + "\n")


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path("tests/backends/tiny")
    for name, build in (("smolvlm", build_smolvlm), ("gemma3", build_gemma3)):
        out = root / name
        out.mkdir(parents=True, exist_ok=True)
        model, processor = build(out)
        golden(out, model, processor)
        if name == "smolvlm":
            from loupe.models.hf_onnx import export_smolvlm

            export_smolvlm(model, processor, out / "hf" / "onnx")
        print(f"built {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
