"""Plain, frozen value types passed between the engine's layers and to its clients."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, replace
from typing import Any


class Status(enum.StrEnum):
    """The outcome of one analysis; every one of them is a normal value, never a crash."""

    OK = "ok"
    REFUSED = "refused"
    TRUNCATED = "truncated"
    INVALID = "invalid"
    ERROR = "error"


@dataclass(frozen=True)
class Box:
    """A box found in the data: where in the JSON, its label, 0–1000 coords and upright-pixel coords."""

    pointer: str
    label: str | None
    box_2d: tuple[float, float, float, float]  # [ymin, xmin, ymax, xmax] normalized 0–1000
    pixels: tuple[int, int, int, int]  # [x0, y0, x1, y1] in the upright image's pixels
    image_id: str
    confidence: float | None = None


@dataclass(frozen=True)
class Timings:
    """Wall-clock milliseconds per stage of one analysis."""

    load_ms: float = 0.0
    preprocess_ms: float = 0.0
    encode_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    constraint_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True)
class Tokens:
    """Token counts of one analysis."""

    prompt: int = 0
    image: int = 0
    completion: int = 0


@dataclass(frozen=True)
class ImageInfo:
    """What the engine knows about one input image after intake."""

    id: str
    path: str
    sha256: str
    width: int  # upright, before downscaling
    height: int
    sent_width: int  # what the model saw
    sent_height: int
    transforms: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageEmbedding:
    """One image's pooled vision-encoder output, the vector similar-image search compares (float32, little-endian,
    `dim` values), with the model and detail that produced it: vectors from different models never compare."""

    image_id: str
    model: str
    detail: str
    vector: bytes

    @property
    def dim(self) -> int:
        """How many float32 values the vector holds."""
        return len(self.vector) // 4


@dataclass(frozen=True)
class Result:
    """Everything one analysis produced; `to_dict()` is the JSON line the CLI prints."""

    status: Status
    task: str
    model: str
    backend: str
    images: tuple[ImageInfo, ...] = ()
    data: Any = None
    raw: str = ""
    confidence: dict[str, float] = field(default_factory=dict)
    boxes: tuple[Box, ...] = ()
    timings: Timings = Timings()
    tokens: Tokens = Tokens()
    attempts: int = 1
    error: str | None = None
    # per leaf, the smallest probability the model itself gave the value's tokens before the schema's mask
    # (p' x the allowed share): low where the schema forbade what the model wanted (loupe.core.confidence)
    model_confidence: dict[str, float] = field(default_factory=dict)
    # each image's embedding where the backend gives one (stored for search; not part of the JSON line)
    embeddings: tuple[ImageEmbedding, ...] = field(default=(), repr=False, compare=False)

    @property
    def min_confidence(self) -> float | None:
        """The lowest leaf confidence, or None when there are no leaves."""
        return min(self.confidence.values()) if self.confidence else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (enums as strings, tuples as lists)."""
        out = asdict(replace(self, embeddings=()))
        del out["embeddings"]
        out["status"] = self.status.value
        return out
