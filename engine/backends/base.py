"""The Backend protocol: run one constrained generation over images and a prompt."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from loupe.core.confidence import TokenStep
from loupe.core.constrain.base import Constraint
from loupe.core.constrain.runaway import Limits, Loop
from PIL import Image

StopReason = Literal["eos", "max_tokens", "cancelled", "loop", "refusal_unmeant"]
# called on the decoding thread with each token's bytes and its step as the token is produced (e.g. to stream it)
OnToken = Callable[[bytes, TokenStep], None]


@dataclass(frozen=True)
class PreparedImage:
    """An upright RGB image, already downscaled, with its id in the prompt."""

    id: str
    image: Image.Image


@dataclass(frozen=True)
class GenerationRequest:
    """What a backend needs for one attempt."""

    text: str  # the user message; `prompt.MEDIA` marks where each image goes, in order
    images: tuple[PreparedImage, ...]
    constraint: Constraint | None  # for steerable (local) backends
    schema: dict[str, Any] | bool  # for backends that take a schema (cloud response_format)
    max_tokens: int = 1024
    temperature: float = 0.0
    seed: int = 0
    allow_refusal: bool = False  # the constraint admits "REFUSE: ..."; backends gate it (constrain.base)
    image_max_tokens: int | None = None  # cap on image tokens per image (None: the model's default)
    limits: Limits | None = None  # runaway guard for token-level backends (loupe.core.constrain.runaway); None: off
    on_token: OnToken | None = field(default=None, compare=False, repr=False)  # token-level backends call it


@dataclass
class Generation:
    """What a backend produced: the text, one step per token, why it stopped, and timings (ms)."""

    text: str
    steps: list[TokenStep] = field(default_factory=list)
    stop: StopReason = "eos"
    prompt_tokens: int = 0
    image_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    # per image id: what the backend did to the picture it was given (e.g. llama.cpp's tiling), for the record
    image_steps: dict[str, tuple[str, ...]] = field(default_factory=dict)
    loop: Loop | None = None  # with stop "loop": which value repeated what
    # (start byte, end byte, p'): spans the runaway guard ended against the model's wish, with its p' of that end
    doubts: list[tuple[int, int, float]] = field(default_factory=list)
    # per image id: its pooled vision-encoder output (float32 little-endian bytes, one vector per image) where the
    # backend has one at no extra cost (llama.cpp: the projector output it encoded or kept); empty for the others
    embeddings: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, for the engine to plan around."""

    vision: bool = True
    multi_image: bool = True
    token_confidence: bool = True
    max_context: int = 4096


class Backend(Protocol):
    """A loaded model that turns a prompt + images into constrained text."""

    name: ClassVar[str]
    steerable: ClassVar[bool]  # True: takes a token-level Constraint; False: a schema

    model_id: str
    capabilities: Capabilities
    load_ms: float

    @classmethod
    def is_available(cls) -> bool:
        """Whether the backend's dependency is installed (find_spec only; never imports it)."""

    def compile(self, schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> Constraint:
        """Compile a schema for this backend's tokenizer."""

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        """Run one attempt; normal stops (max tokens, cancel) are values on `Generation.stop`."""

    def close(self) -> None:
        """Free the model; the backend is unusable afterwards."""
