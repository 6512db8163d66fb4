"""C = Hugging Face transformers on CPU: the same architecture and dimensions, random init from the config.

Needs the `bench` extra (torch CPU build + transformers). The input is what Loupe's model sees: the same number of
prompt text tokens and of 512 px tiles (one tile = 64 image tokens for SmolVLM), and the same number of new tokens
(greedy, min = max, no constraint: C does less work than Loupe here, which only flatters C).
"""

from __future__ import annotations

import time
from typing import Any

from loupe.models.synthetic import SyntheticSpec


def available() -> str | None:
    """None when torch and transformers import, else why not."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[bench]')"
    return None


class TransformersSide:
    """Idefics3ForConditionalGeneration (SmolVLM's architecture) built from a synthetic spec, fp32, random weights."""

    def __init__(self, spec: SyntheticSpec, threads: int) -> None:
        import torch
        from transformers import Idefics3Config, Idefics3ForConditionalGeneration

        if spec.family != "smolvlm":
            raise ValueError("the transformers side is built for the smolvlm (idefics3) family only")
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        vocab = spec.vocab_size or 512
        self.image_token = vocab - 1
        config = Idefics3Config(
            text_config={
                "model_type": "llama",
                "hidden_size": spec.n_embd,
                "num_hidden_layers": spec.n_layer,
                "num_attention_heads": spec.n_head,
                "num_key_value_heads": spec.n_head_kv,
                "intermediate_size": spec.n_ff,
                "vocab_size": vocab,
                "rope_theta": spec.rope_theta,
                "rms_norm_eps": spec.rms_eps,
                "max_position_embeddings": spec.n_ctx,
                "tie_word_embeddings": spec.tie_embeddings,
            },
            vision_config={
                "hidden_size": spec.v_n_embd,
                "num_hidden_layers": spec.v_n_layer,
                "num_attention_heads": spec.v_n_head,
                "intermediate_size": spec.v_n_ff,
                "image_size": spec.v_image_size,
                "patch_size": spec.v_patch_size,
            },
            scale_factor=spec.scale_factor,
            image_token_id=self.image_token,
            vocab_size=vocab,
        )
        self.spec = spec
        self.torch = torch
        self.model = Idefics3ForConditionalGeneration(config).eval()
        self.params = sum(p.numel() for p in self.model.parameters())

    def inputs(self, text_tokens: int, tiles: int) -> dict[str, Any]:
        """Prompt of `text_tokens` text ids around `tiles` tiles of image tokens, and random pixels."""
        torch, s = self.torch, self.spec
        gen = torch.Generator().manual_seed(1)
        head = torch.randint(0, self.image_token - 1, (text_tokens - text_tokens // 8,), generator=gen)
        tail = torch.randint(0, self.image_token - 1, (text_tokens // 8,), generator=gen)
        image = torch.full((tiles * s.image_tokens_per_tile,), self.image_token)
        ids = torch.cat([head, image, tail]).unsqueeze(0)
        pixels = torch.rand((1, tiles, 3, s.v_image_size, s.v_image_size), generator=gen)
        mask = torch.ones((1, tiles, s.v_image_size, s.v_image_size), dtype=torch.bool)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values": pixels,
            "pixel_attention_mask": mask,
        }

    def run(self, text_tokens: int, tiles: int, new_tokens: int) -> dict[str, float]:
        """One analysis: prefill (vision + prompt) timed alone, then generate() end to end."""
        inputs = self.inputs(text_tokens, tiles)
        with self.torch.inference_mode():
            t0 = time.perf_counter()
            self.model(**inputs)
            t1 = time.perf_counter()
            out = self.model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
            t2 = time.perf_counter()
        made = int(out.shape[1] - inputs["input_ids"].shape[1])
        prefill_ms, total_ms = (t1 - t0) * 1000, (t2 - t1) * 1000
        return {
            "total_ms": total_ms,
            "prefill_ms": prefill_ms,
            "new_tokens": made,
            "decode_ms_per_token": (total_ms - prefill_ms) / made if made else float("nan"),
            "prompt_tokens": int(inputs["input_ids"].shape[1]),
        }
