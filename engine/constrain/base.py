"""The seam between a decoding loop and a grammar engine: Constraint (compiled) and Matcher (one run)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

REFUSAL_PREFIX = "REFUSE:"


class Matcher(Protocol):
    """Tracks one generation against a compiled constraint; created fresh per attempt."""

    def fill_mask(self, mask: np.ndarray) -> None:
        """Write the allowed-token bitmask (int32 words, bit i of the vocab = token i) into `mask`."""

    def consume(self, token: int) -> bool:
        """Advance by one sampled token; False if the token was not allowed."""

    def is_accepting(self) -> bool:
        """True when the text so far is a complete match."""

    def is_stopped(self) -> bool:
        """True when nothing but end-of-sequence can follow."""

    def error(self) -> str:
        """The engine's error text, or "" when none."""


class Constraint(Protocol):
    """A schema compiled for one tokenizer; cheap to start matchers from."""

    source: str  # the grammar text, for logs and debugging

    def matcher(self) -> Matcher:
        """A fresh matcher at the start of the output."""


class ConstraintCompiler(Protocol):
    """Compiles JSON Schemas for one tokenizer."""

    name: str

    def compile(self, schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> Constraint:
        """Compile `schema` (raises ConstraintError naming the unsupported part)."""


def mask_words(n_vocab: int) -> int:
    """How many int32 words a bitmask over `n_vocab` tokens needs."""
    return (n_vocab + 31) // 32


def allowed_ids(mask: np.ndarray, n_vocab: int) -> np.ndarray:
    """Token ids whose bit is set in an int32 bitmask."""
    bits = np.unpackbits(mask.view(np.uint8), bitorder="little")[:n_vocab]
    return np.flatnonzero(bits)
