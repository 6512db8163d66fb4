"""Floating-point work of one analysis, counted from a synthetic model's dimensions (2 FLOPs per multiply-add)."""

from __future__ import annotations

from loupe.models.synthetic import SyntheticSpec


def vision_flops(spec: SyntheticSpec, n_tiles: int) -> float:
    """SigLIP tower + projector for `n_tiles` tiles of v_image_size px (idefics3 pixel shuffle / gemma3 pooling)."""
    n = (spec.v_image_size // spec.v_patch_size) ** 2  # patches per tile
    d, ff = spec.v_n_embd, spec.v_n_ff
    patch = 2 * n * 3 * spec.v_patch_size**2 * d
    per_layer = 2 * n * (4 * d * d + 2 * d * ff) + 2 * 2 * n * n * d  # qkvo + mlp + scores and weighted sum
    out_tokens = spec.image_tokens_per_tile
    in_dim = d * spec.scale_factor**2 if spec.family == "smolvlm" else d
    projector = 2 * out_tokens * in_dim * spec.n_embd
    return n_tiles * (patch + spec.v_n_layer * per_layer + projector)


def text_flops(spec: SyntheticSpec, n_tokens: int, n_past: int = 0) -> float:
    """Transformer work for `n_tokens` new tokens after `n_past` cached ones (the output head only for the last)."""
    hd = spec.n_head_dim
    q, kv = spec.n_head * hd, spec.n_head_kv * hd
    weights = spec.n_embd * (q + 2 * kv) + q * spec.n_embd + 3 * spec.n_embd * spec.n_ff
    mean_ctx = n_past + (n_tokens + 1) / 2
    attn = 2 * 2 * mean_ctx * q  # scores + weighted sum per token per layer
    vocab = spec.vocab_size or 512
    return n_tokens * spec.n_layer * (2 * weights + attn) + 2 * spec.n_embd * vocab
