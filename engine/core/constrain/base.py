"""The seam between a decoding loop and a grammar engine: Constraint (compiled) and Matcher (one run)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

REFUSAL_PREFIX = "REFUSE:"
# A refusal must be the model's choice: at the first step, the tokens that start "REFUSE:" must hold at least this
# share of the allowed probability, else they are masked out. The real Gemma 3 270M told to refuse gave them
# 0.49-0.89 of it, on ordinary tasks 0.09-0.40 (bench.real_text).
REFUSAL_MIN_PROB = 0.5
# ... and it must be meant: the model's own unconstrained probability of the rest of "REFUSE:" that the grammar
# forces (the product over its tokens) must reach this. A random-weight model that drifts into "R" gives each
# forced token about 1/vocabulary; then the attempt stops ("refusal_unmeant") and is run again without the branch.
REFUSAL_CONFIRM = 0.05
# How the decoded JSON is laid out (item separator, key separator). A real model puts most of its probability on
# a space after ":" and ","; compact JSON left 0.4-1.9 % of it allowed there (bench.real_text). The prompt shows the
# schema in the same layout.
LAYOUTS: dict[str, tuple[str, str]] = {"spaced": (", ", ": "), "compact": (",", ":")}
DEFAULT_LAYOUT = "spaced"


def with_layout(schema: dict[str, Any] | bool, layout: str) -> dict[str, Any] | bool:
    """`schema` with the grammar option that lays its JSON out as `layout` (LLGuidance's x-guidance)."""
    if isinstance(schema, bool):
        return schema
    items, keys = LAYOUTS[layout]
    guidance = {**(schema.get("x-guidance") or {}), "item_separator": items, "key_separator": keys}
    return {**schema, "x-guidance": guidance}


class Matcher(Protocol):
    """Tracks one generation against a compiled constraint; created fresh per attempt."""

    def fill_mask(self, mask: np.ndarray) -> None:
        """Write the allowed-token bitmask (int32 words, bit i of the vocab = token i) into `mask`."""

    def consume(self, token: int) -> bool:
        """Advance by one sampled token; False if the token was not allowed."""

    def forced_tokens(self) -> list[int]:
        """Tokens the constraint forces next (fast-forward): appended without sampling, counted certain."""

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


def mask_words(n_vocab: int) -> int:
    """How many int32 words a bitmask over `n_vocab` tokens needs."""
    return (n_vocab + 31) // 32


def allowed_ids(mask: np.ndarray, n_vocab: int) -> np.ndarray:
    """Token ids whose bit is set in an int32 bitmask."""
    bits = np.unpackbits(mask.view(np.uint8), bitorder="little")[:n_vocab]
    return np.flatnonzero(bits)


def gate_refusal(probs: np.ndarray, starts_refusal: np.ndarray, min_prob: float = REFUSAL_MIN_PROB) -> np.ndarray:
    """At the first step: keep only refusal tokens if they hold >= `min_prob` of the mass, else drop them.

    `probs` are the renormalized probabilities of the allowed tokens, `starts_refusal` flags which
    of them begin the refusal branch. Returns a boolean keep-mask over the allowed tokens.
    """
    if not starts_refusal.any() or starts_refusal.all():
        return np.ones_like(starts_refusal, dtype=bool)
    refusing = float(probs[starts_refusal].sum()) >= min_prob
    return starts_refusal.copy() if refusing else ~starts_refusal
