"""How well confidence predicts correctness: reliability bins, expected calibration error, accuracy vs coverage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loupe.eval.metrics import Sample

BINS = 10


@dataclass(frozen=True)
class Bin:
    """Samples whose confidence falls in [lo, hi) (the last bin includes 1.0)."""

    lo: float
    hi: float
    count: int
    mean_confidence: float | None
    accuracy: float | None


@dataclass(frozen=True)
class CoveragePoint:
    """Accept everything with confidence >= threshold: how much is accepted, and how much of that is right."""

    threshold: float
    coverage: float
    accuracy: float
    accepted: int


def scored(samples: Sequence[Sample]) -> list[tuple[float, bool]]:
    """(confidence, correct) of the samples that have a confidence."""
    return [(s.confidence, s.correct) for s in samples if s.confidence is not None]


def reliability(samples: Sequence[Sample], bins: int = BINS) -> list[Bin]:
    """Equal-width confidence bins with their mean confidence and accuracy."""
    groups: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for conf, ok in scored(samples):
        groups[min(int(conf * bins), bins - 1) if conf >= 0 else 0].append((conf, ok))
    out = []
    for i, g in enumerate(groups):
        mean = sum(c for c, _ in g) / len(g) if g else None
        acc = sum(ok for _, ok in g) / len(g) if g else None
        out.append(Bin(round(i / bins, 6), round((i + 1) / bins, 6), len(g), mean, acc))
    return out


def ece(samples: Sequence[Sample], bins: int = BINS) -> float | None:
    """Expected calibration error: sum over bins of (share of samples) x |accuracy - mean confidence|."""
    total = sum(b.count for b in reliability(samples, bins))
    if not total:
        return None
    return sum(
        b.count / total * abs(b.accuracy - b.mean_confidence)  # type: ignore[operator]
        for b in reliability(samples, bins)
        if b.count
    )


def coverage_curve(samples: Sequence[Sample]) -> list[CoveragePoint]:
    """One point per distinct confidence, highest threshold first; samples without confidence are never accepted."""
    n = len(samples)
    pts = sorted(scored(samples), key=lambda x: -x[0])
    out: list[CoveragePoint] = []
    right = 0
    for k, (conf, ok) in enumerate(pts, start=1):
        right += ok
        if k < len(pts) and pts[k][0] == conf:
            continue  # ties are accepted together
        out.append(CoveragePoint(conf, k / n, right / k, k))
    return out
