"""Export a (tiny or real-size) Idefics3/SmolVLM model to the onnx-community three-piece ONNX layout.

Build-time only (torch + onnxscript; `torch.onnx.export` with the dynamo exporter, since optimum cannot
export idefics3 and the legacy exporter produced an invalid vision graph). The pieces and their I/O match
the published onnx-community/SmolVLM-*-Instruct exports, so loupe.backends.onnx runs both:
  vision_encoder.onnx        pixel_values [N,3,H,W] f32, pixel_attention_mask [N,H,W] bool -> image_features [N,T,D]
  embed_tokens.onnx          input_ids [B,S] i64 -> inputs_embeds [B,S,D]
  decoder_model_merged.onnx  inputs_embeds, attention_mask [B,P+S] i64, position_ids [B,S] i64,
                             past_key_values.{i}.key/.value [B,KV,P,hd] -> logits [B,S,V], present.{i}.key/.value
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def export_smolvlm(model: Any, processor: Any, out: Path) -> list[Path]:
    """Write the three pieces for `model` (an Idefics3ForConditionalGeneration) into `out`."""
    import torch
    from torch.export import Dim
    from transformers import DynamicCache

    out.mkdir(parents=True, exist_ok=True)
    inner = model.model
    text_cfg = model.config.text_config
    n_layers, n_kv = text_cfg.num_hidden_layers, text_cfg.num_key_value_heads
    head_dim = getattr(text_cfg, "head_dim", None) or text_cfg.hidden_size // text_cfg.num_attention_heads
    patch = model.config.vision_config.patch_size

    class Vision(torch.nn.Module):
        def forward(self, pixel_values: torch.Tensor, pixel_attention_mask: torch.Tensor) -> torch.Tensor:
            grid = pixel_attention_mask.unfold(1, patch, patch).unfold(2, patch, patch)
            patch_mask = grid.sum(dim=(-1, -2)) > 0
            hidden = inner.vision_model(pixel_values=pixel_values, patch_attention_mask=patch_mask).last_hidden_state
            return inner.connector(hidden)

    class Embed(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return inner.text_model.embed_tokens(input_ids)

    class Decoder(torch.nn.Module):
        def forward(
            self,
            inputs_embeds: torch.Tensor,
            attention_mask: torch.Tensor,
            position_ids: torch.Tensor,
            *past: torch.Tensor,
        ) -> tuple[torch.Tensor, ...]:
            cache = DynamicCache(config=text_cfg)
            for i in range(n_layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            hidden = inner.text_model(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            logits = model.lm_head(hidden.last_hidden_state)
            presents = []
            for layer in cache.layers:
                presents += [layer.keys, layer.values]
            return (logits, *presents)

    size = model.config.vision_config.image_size
    n_img, h = Dim("num_images", min=1, max=64), Dim.AUTO
    pix = torch.randn(2, 3, size, size)
    pmask = torch.ones(2, size, size, dtype=torch.bool)
    _export(
        Vision(),
        (pix, pmask),
        out / "vision_encoder.onnx",
        ["pixel_values", "pixel_attention_mask"],
        ["image_features"],
        ({0: n_img, 2: h, 3: h}, {0: n_img, 1: h, 2: h}),
    )

    batch, seq, past_len = (
        Dim("batch", min=1, max=8),
        Dim("sequence_length", min=1, max=4096),
        Dim("past_sequence_length", min=1, max=8192),
    )
    ids = torch.tensor([[1, 2, 3]], dtype=torch.long)
    _export(Embed(), (ids,), out / "embed_tokens.onnx", ["input_ids"], ["inputs_embeds"], ({0: batch, 1: seq},))

    s, p = 3, 4
    embeds = torch.randn(1, s, text_cfg.hidden_size)
    mask = torch.ones(1, p + s, dtype=torch.long)
    pos = torch.arange(p, p + s).unsqueeze(0)
    past = [torch.randn(1, n_kv, p, head_dim) for _ in range(2 * n_layers)]
    past_names = [f"past_key_values.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    present_names = [f"present.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    total = Dim("total_sequence_length", min=2, max=12288)
    past_shapes = tuple({0: batch, 2: past_len} for _ in past)
    shapes = ({0: batch, 1: seq}, {0: batch, 1: total}, {0: batch, 1: seq}, past_shapes)
    _export(
        Decoder(),
        (embeds, mask, pos, *past),
        out / "decoder_model_merged.onnx",
        ["inputs_embeds", "attention_mask", "position_ids", *past_names],
        ["logits", *present_names],
        shapes,
    )
    return [out / n for n in ("vision_encoder.onnx", "embed_tokens.onnx", "decoder_model_merged.onnx")]


def _export(
    module: Any, args: tuple[Any, ...], path: Path, inputs: list[str], outputs: list[str], shapes: tuple[Any, ...]
) -> None:
    import torch

    program = torch.onnx.export(
        module.eval(),
        args,
        dynamo=True,
        input_names=inputs,
        output_names=outputs,
        dynamic_shapes=shapes,
        external_data=False,
        optimize=True,
        verbose=False,
    )
    program.save(str(path), external_data=False)
