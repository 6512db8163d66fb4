"""Per-field confidence from the probabilities of the tokens that produced each value.

Formula (also in the README): at every decoding step the model's softmax is renormalized over the
tokens the constraint allowed, p'(t) = p(t) / sum_{a in allowed} p(a); a token the constraint forced
(only one allowed) has p' = 1. A leaf value's confidence is the smallest p' among the tokens whose
bytes overlap the value's bytes in the output (for strings, quotes included, so the decision to end
the string counts): a value is as certain as its least certain token. The model confidence beside it takes each
token's unrenormalized probability, p'(t) x sum_{a in allowed} p(a): it also falls where the schema forbade what
the model wanted (bench.real_text compares both).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TokenStep:
    """One generated token: its byte span in the output and its renormalized probability."""

    start: int
    end: int
    prob: float
    forced: bool = False
    mass: float = 1.0  # the share of the model's whole probability that the constraint allowed at this step


def field_confidence(
    steps: Sequence[TokenStep], spans: Mapping[str, tuple[int, int]], *, unconstrained: bool = False
) -> dict[str, float]:
    """JSON Pointer -> confidence in [0, 1] for each leaf span (see module docstring); `unconstrained`: each token
    counts with the model's own probability, p' x the share of its probability the constraint allowed."""
    starts = [s.start for s in steps]
    out: dict[str, float] = {}
    for pointer, (a, b) in spans.items():
        i = max(0, bisect.bisect_right(starts, a) - 1)
        lowest = 1.0
        while i < len(steps) and steps[i].start < b:
            step = steps[i]
            if step.end > a and step.end > step.start:
                lowest = min(lowest, step.prob * step.mass if unconstrained else step.prob)
            i += 1
        out[pointer] = round(max(0.0, min(1.0, lowest)), 6)
    return out


def capped(
    confidence: dict[str, float], spans: Mapping[str, tuple[int, int]], doubts: Sequence[tuple[int, int, float]]
) -> dict[str, float]:
    """`confidence` with each leaf inside a span the runaway guard ended against the model's wish (an array cut at
    its item limit, a number at its length) capped by the model's p' of that ending: those values are as certain
    as the decision to stop them."""
    if not doubts:
        return confidence
    out = dict(confidence)
    for pointer, (a, b) in spans.items():
        for start, end, prob in doubts:
            if start <= a and b <= end and pointer in out:
                out[pointer] = round(min(out[pointer], prob), 6)
    return out


def format_confidence(value: float) -> str:
    """A confidence for people to read, to 2 significant digits, trailing zeros kept: 0.0023 -> "0.0023",
    0.004 -> "0.0040", 0.5 -> "0.50", 0.999 -> "1.0", 1.0 -> "1.0", 0.0 -> "0". Small values stay apart (0.0023 and
    0.004 do not both read "0.00"), so a list ordered by confidence reads in order."""
    if math.isnan(value):
        return "nan"
    if value <= 0:
        return "0"
    if value >= 1:
        return "1.0"
    rounded = float(f"{value:.2g}")  # 2 significant digits (0.0995 -> 0.1, which then shows as 0.10)
    if rounded >= 1:
        return "1.0"
    decimals = 1 - math.floor(math.log10(rounded))
    return f"{rounded:.{decimals}f}"
