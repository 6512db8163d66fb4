"""Scoring one prediction against its label, field by field, and adding the scores up over a labelled set."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

BOX_KEY = "box_2d"
IOU_MATCH = 0.5


@dataclass(frozen=True)
class Scoring:
    """How strict the scoring is: normalized string match, number tolerances, box IoU for a match."""

    normalize_strings: bool = False  # casefold, strip accents and punctuation, squeeze spaces
    abs_tol: float = 0.0  # a number is right when |error| <= max(abs_tol, rel_tol * |truth|)
    rel_tol: float = 0.0
    iou: float = IOU_MATCH


@dataclass(frozen=True)
class Sample:
    """One judged prediction: the field (pattern, list indices as `*`), right or wrong, its confidence."""

    field: str
    correct: bool
    confidence: float | None
    pointer: str = ""  # where in the prediction (for thresholds on exact pointers)


@dataclass
class ItemScore:
    """Everything scored on one image."""

    samples: list[Sample] = field(default_factory=list)
    errors: list[tuple[str, float, float]] = field(default_factory=list)  # (field, abs error, rel error)
    counts: list[tuple[str, int, int, int]] = field(default_factory=list)  # (field, tp, fp, fn) of lists
    ious: list[tuple[str, float]] = field(default_factory=list)  # (field, IoU) of matched boxes
    pairs: list[tuple[str, str, str]] = field(default_factory=list)  # (field, truth, prediction) of strings
    record_correct: bool = False


def iou(a: tuple[float, ...] | list[float], b: tuple[float, ...] | list[float]) -> float:
    """Intersection over union of two [ymin, xmin, ymax, xmax] boxes; two empty boxes: 1 when identical, else 0."""
    ya, xa, yb, xb = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, yb - ya) * max(0.0, xb - xa)
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    if union <= 0:
        return 1.0 if list(a) == list(b) else 0.0
    return inter / union


def greedy_match(
    truth: list[list[float]], pred: list[list[float]], threshold: float = IOU_MATCH
) -> list[tuple[int, int, float]]:
    """(truth index, prediction index, IoU) pairs: the highest-IoU pair first, each box used once, IoU >= threshold."""
    pairs = sorted(
        ((iou(t, p), i, j) for i, t in enumerate(truth) for j, p in enumerate(pred)), key=lambda x: (-x[0], x[1], x[2])
    )
    used_t: set[int] = set()
    used_p: set[int] = set()
    out = []
    for value, i, j in pairs:
        if value < threshold or i in used_t or j in used_p:
            continue
        used_t.add(i)
        used_p.add(j)
        out.append((i, j, value))
    return sorted(out)


def normalize(text: str) -> str:
    """Casefolded, accent-free, punctuation-free, single-spaced text."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_box_list(v: Any) -> bool:
    return isinstance(v, list) and any(isinstance(x, dict) and isinstance(x.get(BOX_KEY), list) for x in v)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class _Scorer:
    def __init__(self, confidence: dict[str, float], scoring: Scoring) -> None:
        self.conf = confidence
        self.s = scoring
        self.out = ItemScore()
        self.all_right = True

    def _sample(self, pattern: str, pointer: str, correct: bool) -> None:
        self.out.samples.append(Sample(pattern or "/", correct, self._conf(pointer), pointer or "/"))
        self.all_right &= correct

    def _conf(self, pointer: str) -> float | None:
        if pointer in self.conf:
            return self.conf[pointer]
        inside = [c for p, c in self.conf.items() if p.startswith(pointer + "/")]
        return min(inside) if inside else None

    def value(self, truth: Any, pred: Any, pattern: str, pointer: str, present: bool) -> None:
        if isinstance(truth, dict):
            for key, sub in truth.items():
                k = _escape(str(key))
                has = present and isinstance(pred, dict) and key in pred
                self.value(sub, pred.get(key) if has else None, f"{pattern}/{k}", f"{pointer}/{k}", has)
        elif _is_box_list(truth) or (isinstance(truth, list) and _is_box_list(pred)):
            self.boxes(truth, pred if present and isinstance(pred, list) else [], pattern, pointer)
        elif isinstance(truth, list) and all(isinstance(x, dict) for x in truth) and truth:
            items = pred if present and isinstance(pred, list) else []
            self.all_right &= len(items) == len(truth)  # an extra or missing item makes the record wrong
            for i, sub in enumerate(truth):
                has = i < len(items)
                self.value(sub, items[i] if has else None, f"{pattern}/*", f"{pointer}/{i}", has)
        elif isinstance(truth, list):
            self.bag(truth, pred if present and isinstance(pred, list) else [], pattern, pointer)
        else:
            self.leaf(truth, pred, pattern, pointer, present)

    def leaf(self, truth: Any, pred: Any, pattern: str, pointer: str, present: bool) -> None:
        if not present:
            self._sample(pattern, pointer, False)
            if isinstance(truth, str):
                self.out.pairs.append((pattern or "/", truth, "(missing)"))
            return
        if _number(truth) and _number(pred):
            err = abs(float(pred) - float(truth))
            rel = err / abs(truth) if truth else (0.0 if err == 0 else math.inf)
            self.out.errors.append((pattern or "/", err, rel))
            self._sample(pattern, pointer, err <= max(self.s.abs_tol, self.s.rel_tol * abs(truth)))
            return
        if isinstance(truth, str) and isinstance(pred, str):
            self.out.pairs.append((pattern or "/", truth, pred))
            same = normalize(truth) == normalize(pred) if self.s.normalize_strings else truth == pred
            self._sample(pattern, pointer, same)
            return
        self._sample(pattern, pointer, type(truth) is type(pred) and truth == pred)

    def bag(self, truth: list[Any], pred: list[Any], pattern: str, pointer: str) -> None:
        key = (lambda v: normalize(v) if isinstance(v, str) else repr(v)) if self.s.normalize_strings else repr
        t, p = Counter(map(key, truth)), Counter(map(key, pred))
        tp = sum((t & p).values())
        self.out.counts.append((pattern or "/", tp, sum(p.values()) - tp, sum(t.values()) - tp))
        self._sample(pattern, pointer, t == p)

    def boxes(self, truth: list[Any], pred: list[Any], pattern: str, pointer: str) -> None:
        t_items = [x for x in truth if isinstance(x, dict) and isinstance(x.get(BOX_KEY), list)]
        p_idx = [j for j, x in enumerate(pred) if isinstance(x, dict) and isinstance(x.get(BOX_KEY), list)]
        matches = greedy_match([x[BOX_KEY] for x in t_items], [pred[j][BOX_KEY] for j in p_idx], self.s.iou)
        box_field = f"{pattern}/*/{BOX_KEY}"
        self.out.counts.append((box_field, len(matches), len(p_idx) - len(matches), len(t_items) - len(matches)))
        matched = {j: (i, v) for i, j, v in matches}
        for j, pj in enumerate(p_idx):  # every predicted box is one sample: found a labelled box or not
            self.out.samples.append(
                Sample(box_field, j in matched, self._conf(f"{pointer}/{pj}/{BOX_KEY}"), f"{pointer}/{pj}/{BOX_KEY}")
            )
        self.all_right &= len(matches) == len(t_items) == len(p_idx)
        for j, (i, v) in matched.items():
            self.out.ious.append((box_field, v))
            pj = p_idx[j]
            for key, sub in t_items[i].items():
                if key == BOX_KEY:
                    continue
                k = _escape(str(key))
                has = key in pred[pj]
                self.value(sub, pred[pj].get(key), f"{pattern}/*/{k}", f"{pointer}/{pj}/{k}", has)


def score_item(
    truth: Any,
    pred: Any,
    confidence: dict[str, float] | None = None,
    scoring: Scoring = Scoring(),
    *,
    answered: bool = True,
) -> ItemScore:
    """Score one prediction (None or `answered=False` when the model gave no data) against its label."""
    s = _Scorer(confidence or {}, scoring)
    s.value(truth, pred, "", "", answered and pred is not None)
    s.out.record_correct = s.all_right and answered and pred is not None
    return s.out


@dataclass(frozen=True)
class FieldMetrics:
    """One field over the whole set; numbers are None where they do not apply."""

    field: str
    kind: str  # value | number | list | boxes
    n: int
    accuracy: float | None = None
    mae: float | None = None
    mean_rel_error: float | None = None
    precision: float | None = None
    recall: float | None = None
    mean_iou: float | None = None
    confusion: dict[str, dict[str, int]] | None = None  # truth -> prediction -> count (enum fields)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def aggregate(items: list[ItemScore], enums: dict[str, list[str]] | None = None) -> list[FieldMetrics]:
    """Per-field metrics over every item; `enums` maps field patterns to their allowed values (for confusion)."""
    enums = enums or {}
    samples: dict[str, list[bool]] = defaultdict(list)
    errors: dict[str, list[tuple[float, float]]] = defaultdict(list)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    ious: dict[str, list[float]] = defaultdict(list)
    confusion: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for it in items:
        for s in it.samples:
            samples[s.field].append(s.correct)
        for f, e, r in it.errors:
            errors[f].append((e, r))
        for f, tp, fp, fn in it.counts:
            c = counts[f]
            c[0], c[1], c[2] = c[0] + tp, c[1] + fp, c[2] + fn
        for f, v in it.ious:
            ious[f].append(v)
        for f, t, p in it.pairs:
            if f in enums:
                confusion[f][t][p] += 1
    out = []
    for f in sorted(set(samples) | set(counts)):
        if f in counts:
            tp, fp, fn = counts[f]
            kind = "boxes" if f in ious or f.endswith(f"/{BOX_KEY}") else "list"
            iou_list = ious.get(f, [])
            out.append(
                FieldMetrics(
                    f,
                    kind,
                    tp + fn,
                    _ratio(sum(samples[f]), len(samples[f])) if kind == "list" else None,
                    precision=_ratio(tp, tp + fp),
                    recall=_ratio(tp, tp + fn),
                    mean_iou=_ratio(sum(iou_list), len(iou_list)),
                )
            )
            continue
        ok = samples[f]
        errs = errors.get(f, [])
        finite = [r for _, r in errs if math.isfinite(r)]
        conf = {t: dict(c) for t, c in confusion[f].items()} if f in enums else None
        out.append(
            FieldMetrics(
                f,
                "number" if errs else "value",
                len(ok),
                _ratio(sum(ok), len(ok)),
                mae=_ratio(sum(e for e, _ in errs), len(errs)),
                mean_rel_error=_ratio(sum(finite), len(finite)),
                confusion=conf,
            )
        )
    return out


def record_accuracy(items: list[ItemScore]) -> float | None:
    """The share of images whose whole record is right."""
    return _ratio(sum(i.record_correct for i in items), len(items))


def schema_enums(schema: Any, pattern: str = "") -> dict[str, list[str]]:
    """Field patterns (list indices as `*`) of string enums in a JSON Schema (local `$ref`s followed)."""
    root = schema if isinstance(schema, dict) else {}

    def walk(node: Any, pat: str, depth: int) -> dict[str, list[str]]:
        if not isinstance(node, dict) or depth > 20:
            return {}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
            return walk(target, pat, depth + 1)
        found: dict[str, list[str]] = {}
        values = node.get("enum")
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            found[pat or "/"] = list(values)
        for key, sub in (node.get("properties") or {}).items():
            found.update(walk(sub, f"{pat}/{_escape(str(key))}", depth + 1))
        if isinstance(node.get("items"), dict):
            found.update(walk(node["items"], f"{pat}/*", depth + 1))
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(key) or []:
                found.update(walk(sub, pat, depth + 1))
        return found

    return walk(schema, pattern, 0)
