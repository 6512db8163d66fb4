"""Each metric against numbers worked out by hand: IoU, greedy matching, per-field scores, ECE, coverage, fitting."""

from __future__ import annotations

import pytest
from loupe.eval.calibration import coverage_curve, ece, reliability
from loupe.eval.metrics import (
    ItemScore,
    Sample,
    Scoring,
    aggregate,
    greedy_match,
    iou,
    normalize,
    record_accuracy,
    schema_enums,
    score_item,
)
from loupe.eval.thresholds import fit, fit_field

SCHEMA = {
    "type": "object",
    "properties": {
        "defects": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "label": {"enum": ["scratch", "crack", "stain", "dent"]},
                    "box_2d": {"type": "array"},
                    "severity": {"type": "integer"},
                },
            },
        },
        "ok": {"type": "boolean"},
        "vendor": {"type": "string"},
        "total": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}
TRUTH = {
    "defects": [
        {"label": "scratch", "box_2d": [0, 0, 100, 100], "severity": 2},
        {"label": "dent", "box_2d": [0, 100, 100, 200], "severity": 4},
    ],
    "ok": False,
    "vendor": "ACME Corp.",
    "total": 10.0,
    "tags": ["a", "b", "c"],
}
PRED = {
    "defects": [
        {"label": "scratch", "box_2d": [0, 0, 100, 90], "severity": 3},  # IoU 0.9 with the scratch
        {"label": "crack", "box_2d": [0, 110, 100, 200], "severity": 4},  # IoU 0.9 with the dent
        {"label": "stain", "box_2d": [500, 500, 600, 600], "severity": 1},
    ],  # matches nothing
    "ok": False,
    "vendor": "acme corp",
    "total": 11.0,
    "tags": ["a", "c", "d"],
}


def test_iou_by_hand():
    assert iou([0, 0, 100, 100], [0, 0, 100, 100]) == 1.0
    assert iou([0, 0, 100, 100], [0, 0, 100, 50]) == 0.5  # half inside: 5000 / 10000
    assert iou([0, 0, 100, 100], [50, 50, 150, 150]) == pytest.approx(2500 / 17500)
    assert iou([0, 0, 100, 100], [200, 200, 300, 300]) == 0.0
    assert iou([5, 5, 5, 9], [5, 5, 5, 9]) == 1.0  # the same empty (zero-height) box is the same answer
    assert iou([5, 5, 5, 9], [5, 5, 5, 8]) == 0.0


def test_greedy_matching_takes_the_best_pair_first_and_uses_each_box_once():
    truth = [[0, 0, 100, 100], [0, 100, 100, 200]]
    pred = [[0, 50, 100, 150], [0, 0, 100, 90], [0, 110, 100, 200], [500, 500, 600, 600]]
    # pred 0 overlaps both truths at IoU 1/3 (< 0.5); preds 1 and 2 are 0.9 each; pred 3 overlaps nothing
    assert greedy_match(truth, pred) == [(0, 1, pytest.approx(0.9)), (1, 2, pytest.approx(0.9))]
    # a lower threshold lets the 1/3 overlap count, but only for a truth still unmatched
    assert len(greedy_match(truth, pred, threshold=0.3)) == 2
    # two candidates for one truth: the better (IoU 1.0) wins even though the 0.6 one comes first
    assert greedy_match([[0, 0, 100, 100]], [[0, 0, 100, 60], [0, 0, 100, 100]]) == [(0, 1, 1.0)]


def test_every_field_kind_scored_by_hand():
    conf = {
        "/defects/0/label": 0.9,
        "/defects/1/label": 0.4,
        "/ok": 0.99,
        "/vendor": 0.7,
        "/total": 0.8,
        "/defects/0/box_2d/0": 0.95,
        "/defects/0/box_2d/1": 0.85,
        "/defects/2/box_2d/0": 0.2,
    }
    item = score_item(TRUTH, PRED, conf, Scoring(rel_tol=0.1))
    m = {f.field: f for f in aggregate([item], schema_enums(SCHEMA))}
    boxes = m["/defects/*/box_2d"]
    assert (boxes.kind, boxes.n, boxes.precision, boxes.recall) == ("boxes", 2, pytest.approx(2 / 3), 1.0)
    assert boxes.mean_iou == pytest.approx(0.9)
    assert m["/defects/*/label"].accuracy == 0.5  # scratch right, dent called crack
    assert m["/defects/*/label"].confusion == {"scratch": {"scratch": 1}, "dent": {"crack": 1}}
    sev = m["/defects/*/severity"]
    assert (sev.kind, sev.accuracy, sev.mae, sev.mean_rel_error) == ("number", 0.5, 0.5, 0.25)  # |3-2|/2, 0
    assert m["/ok"].accuracy == 1.0
    assert m["/vendor"].accuracy == 0.0  # exact match by default
    assert m["/total"].accuracy == 1.0 and m["/total"].mae == 1.0  # 1.0 <= 10% of 10
    tags = m["/tags"]
    assert (tags.precision, tags.recall, tags.accuracy) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 0.0)
    assert not item.record_correct
    # confidences follow the predicted pointers: a box takes its lowest coordinate's confidence
    by_ptr = {s.pointer: s for s in item.samples}
    assert by_ptr["/defects/0/box_2d"].confidence == 0.85 and by_ptr["/defects/0/box_2d"].correct
    assert by_ptr["/defects/2/box_2d"].confidence == 0.2 and not by_ptr["/defects/2/box_2d"].correct
    assert by_ptr["/defects/1/label"].confidence == 0.4 and not by_ptr["/defects/1/label"].correct


def test_normalized_strings_tolerances_and_whole_record():
    assert normalize("  ACME  Corp.!") == "acme corp" and normalize("Café") == "cafe"
    loose = score_item(TRUTH, PRED, scoring=Scoring(normalize_strings=True, rel_tol=0.1))
    assert next(s for s in loose.samples if s.field == "/vendor").correct
    strict = score_item({"total": 10.0}, {"total": 10.5})
    assert not strict.samples[0].correct and not strict.record_correct
    assert score_item({"total": 10.0}, {"total": 10.5}, scoring=Scoring(abs_tol=0.5)).record_correct
    assert score_item(TRUTH, TRUTH).record_correct
    missing = score_item(TRUTH, None, answered=False)  # a failed analysis: every field wrong
    assert not missing.record_correct and not any(s.correct for s in missing.samples)
    assert record_accuracy([score_item(TRUTH, TRUTH), missing, score_item({"a": 1}, {"a": 1})]) == pytest.approx(2 / 3)
    assert score_item({"flag": True}, {"flag": 1}).samples[0].correct is False  # a bool is not a number
    rows = {"rows": [{"q": 1}]}
    extra = score_item(rows, {"rows": [{"q": 1}, {"q": 2}]})  # items without boxes pair up by position
    assert [s.correct for s in extra.samples] == [True] and not extra.record_correct


def _samples(pairs: list[tuple[float | None, bool]], field: str = "/f") -> list[Sample]:
    return [Sample(field, ok, conf) for conf, ok in pairs]


def test_ece_reliability_and_coverage_by_hand():
    s = _samples([(0.95, True), (0.95, True), (0.95, False), (0.95, True), (0.25, False), (0.25, True), (None, False)])
    # bin 9: mean 0.95, accuracy 0.75 (4 samples); bin 2: mean 0.25, accuracy 0.5 (2); the unscored one is left out
    assert ece(s) == pytest.approx(4 / 6 * 0.2 + 2 / 6 * 0.25)
    bins = reliability(s)
    assert [b.count for b in bins] == [0, 0, 2, 0, 0, 0, 0, 0, 0, 4]
    assert bins[9].accuracy == 0.75 and bins[2].mean_confidence == 0.25
    assert reliability(_samples([(1.0, True), (0.0, False)]))[9].count == 1  # 1.0 falls in the last bin
    curve = coverage_curve(s)  # ties accepted together; coverage counts the unscored sample too
    assert [(p.threshold, p.coverage, p.accuracy) for p in curve] == [
        (0.95, pytest.approx(4 / 7), 0.75),
        (0.25, pytest.approx(6 / 7), pytest.approx(4 / 6)),
    ]
    assert ece([]) is None


def test_fitted_thresholds_are_the_known_right_ones():
    # field /a: confidence 0.9 ... 0.2, right, right, right, right, wrong, right, wrong, wrong
    a = _samples(
        list(
            zip(
                [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
                [True, True, True, True, False, True, False, False],
                strict=True,
            )
        ),
        "/a",
    )
    assert fit_field("/a", a, 0.98).threshold == 0.6  # 4/4 right at >= 0.6; 4/5 at >= 0.5
    assert fit_field("/a", a, 0.8).threshold == 0.4  # 5/6 = 0.83 at >= 0.4; 5/7 = 0.71 at >= 0.3
    assert fit_field("/a", a, 0.8).coverage == 0.75
    never = fit_field("/c", _samples([(0.9, False), (0.5, False)], "/c"), 0.5)
    assert (never.reached, never.threshold) == (False, 1.0)
    # three images, two fields: /a 0.9 & /b 0.3 | /a 0.5 & /b 0.8 | /a 0.7 & /b 0.9
    items = [
        ItemScore([Sample("/a", True, 0.9, "/a"), Sample("/b", True, 0.3, "/b")], record_correct=True),
        ItemScore([Sample("/a", False, 0.5, "/a"), Sample("/b", True, 0.8, "/b")], record_correct=False),
        ItemScore([Sample("/a", True, 0.7, "/a"), Sample("/b", True, 0.9, "/b")], record_correct=True),
    ]
    result = fit(items, 0.98)
    assert {f.field: f.threshold for f in result.fields} == {"/a": 0.7, "/b": 0.3}  # /b always right: lowest
    assert result.escalation_rate == pytest.approx(1 / 3)  # only the second image (/a 0.5 < 0.7) climbs
    assert result.accepted_record_accuracy == 1.0
    assert result.pointers([{"/a": 0.9, "/b": 0.3, "/c/0/x": 0.1}]) == {"/a": 0.7, "/b": 0.3}
    with pytest.raises(ValueError, match="target accuracy"):
        fit(items, 1.5)


def test_schema_enums_follow_refs_and_items():
    schema = {
        "$defs": {"kind": {"enum": ["a", "b"]}},
        "properties": {"k": {"$ref": "#/$defs/kind"}, "xs": {"items": {"properties": {"c": {"enum": ["x"]}}}}},
    }
    assert schema_enums(schema) == {"/k": ["a", "b"], "/xs/*/c": ["x"]}
