"""Crop rungs: the geometry (margins, edges, the map back to the image) and a `local@crop` step on the ladder."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from loupe.api import Engine
from loupe.backends.cloud import CloudBackend
from loupe.backends.fake import FakeBackend
from loupe.core.images.boxes import all_boxes, invalid_boxes, to_normalized
from loupe.core.images.crops import cut, window
from loupe.core.images.load import load_image
from loupe.core.schema.validate import validation_errors
from loupe.core.tasks import Task
from loupe.core.types import Status
from loupe.escalate import Budget, Ledger, Policy, Step, Thresholds, escalate
from loupe.escalate.audit import audit_rows
from loupe.escalate.runner import EngineRunner
from loupe.models.synthetic import SyntheticModel
from loupe.store.sqlite import Store
from PIL import Image

from tests.hybrid.stub_server import StubCloud, completion
from tests.noise import noise_image

BOXES = Task(
    name="marks",
    instructions="Box every mark.",
    schema={
        "type": "object",
        "required": ["marks"],
        "additionalProperties": False,
        "properties": {
            "marks": {
                "type": "array",
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "required": ["label", "box_2d"],
                    "additionalProperties": False,
                    "properties": {
                        "label": {"enum": ["scratch", "dent"]},
                        "box_2d": {
                            "type": "array",
                            "items": {"type": "integer", "minimum": 0, "maximum": 1000},
                            "minItems": 4,
                            "maxItems": 4,
                        },
                    },
                },
            }
        },
    },
).with_options(max_tokens=256, retries=1)
CROP_LADDER = (Step("local", "low"), Step.parse("local@crop"))


def _marks(*items: tuple[str, list[int]]) -> str:
    return json.dumps({"marks": [{"label": label, "box_2d": box} for label, box in items]})


def _photo(tmp_path: Path, size: tuple[int, int] = (1000, 500)) -> Path:
    path = tmp_path / "panel.png"
    noise_image(size, 7).save(path)
    return path


def test_window_adds_the_margin_around_the_box() -> None:
    win = window((100, 100, 200, 160), (1000, 800), source="/marks/0/box_2d")
    assert (win.x0, win.y0, win.x1, win.y1) == (75, 85, 225, 175) and win.size == (150, 90)
    assert win.to_dict() == {
        "image_id": "img_01",
        "box": "/marks/0/box_2d",
        "window_px": [75, 85, 225, 175],
        "offset_px": [75, 85],
        "size_px": [150, 90],
    }


def test_window_is_shifted_inside_the_image_and_never_larger() -> None:
    corner = window((0, 0, 20, 20), (100, 100))
    assert (corner.x0, corner.y0, corner.x1, corner.y1) == (0, 0, 32, 32)  # min_side 32, pushed off the edge
    edge = window((90, 40, 100, 60), (100, 100), margin=0.5)
    assert (edge.x0, edge.x1) == (68, 100) and edge.size[0] == 32
    whole = window((-50, -50, 500, 500), (120, 80))
    assert (whole.x0, whole.y0, whole.x1, whole.y1) == (0, 0, 120, 80)
    tiny_image = window((1, 1, 2, 2), (10, 8))
    assert tiny_image.size == (10, 8)
    with pytest.raises(ValueError):
        window((0, 0, 1, 1), (10, 10), margin=-0.1)


@pytest.mark.parametrize("pixels", [(200, 50, 400, 150), (0, 0, 31, 17), (640, 300, 1000, 500), (10, 490, 12, 500)])
def test_a_box_maps_from_the_crop_back_to_the_image(pixels: tuple[int, int, int, int]) -> None:
    size = (1000, 500)
    win = window(pixels, size)
    w, h = win.size
    inside = (pixels[0] - win.x0, pixels[1] - win.y0, pixels[2] - win.x0, pixels[3] - win.y0)
    in_crop = [round(v) for v in to_normalized(inside, w, h)]
    back = win.box_to_image(in_crop, size)
    assert back == pytest.approx([round(v) for v in to_normalized(pixels, *size)], abs=1.5)
    assert win.box_to_image([0, 0, 1000, 1000], size) == [
        round(v) for v in to_normalized((win.x0, win.y0, win.x1, win.y1), *size)
    ]


def test_cut_gives_the_window_pixels() -> None:
    img = Image.fromarray(np.arange(60 * 40 * 3, dtype=np.uint8).reshape(40, 60, 3))
    img.info["exif"] = b"Exif\0\0x"
    win = window((10, 5, 20, 15), img.size)
    crop = cut(img, win)
    assert crop.size == win.size and crop.getpixel((0, 0)) == img.getpixel((win.x0, win.y0))


def test_crop_rung_looks_at_each_box_and_maps_its_answers_back(tmp_path: Path) -> None:
    img = load_image(_photo(tmp_path))
    backend = FakeBackend(
        [
            _marks(("scratch", [100, 200, 300, 400]), ("dent", [500, 500, 1000, 1000])),
            _marks(("scratch", [0, 0, 1000, 1000])),
            _marks(("dent", [250, 250, 750, 750])),
        ],
        prob=0.6,
    )
    runners = {"local": EngineRunner(Engine(backend))}
    esc = escalate(BOXES, [img], Policy(CROP_LADDER, Thresholds(overall=0.9)), runners, Ledger(Budget()))
    low, crop = esc.steps
    assert low.outcome == "escalated" and crop.step == "local@crop" and crop.status == "ok"
    assert [c["window_px"] for c in crop.crops or ()] == [[150, 25, 450, 175], [250, 125, 1000, 500]]
    assert [c["box"] for c in crop.crops or ()] == ["/marks/0/box_2d", "/marks/1/box_2d"]
    assert [r.images[0].image.size for r in backend.requests[1:]] == [(300, 150), (750, 375)]
    assert backend.requests[0].images[0].image.size == (512, 256)  # the low pass was downscaled, crops were not
    merged = esc.result.data["marks"]
    assert merged[0] == {"label": "scratch", "box_2d": [50, 150, 350, 450]}  # the whole first crop
    y0, x0 = (125 + 0.25 * 375) / 500 * 1000, (250 + 0.25 * 750) / 1000 * 1000
    y1, x1 = (125 + 0.75 * 375) / 500 * 1000, (250 + 0.75 * 750) / 1000 * 1000
    assert merged[1]["box_2d"] == [round(y0), round(x0), round(y1), round(x1)]
    assert [b.pixels for b in esc.result.boxes] == [(150, 25, 450, 175), (438, 219, 812, 406)]
    assert set(esc.result.confidence) == {
        "/marks/0/label",
        "/marks/1/label",
        *(f"/marks/{i}/box_2d/{j}" for i in range(2) for j in range(4)),
    }
    assert esc.records()[1]["crops"][0]["size_px"] == [300, 150] and "crops" not in esc.records()[0]


def test_crop_rung_without_boxes_is_skipped_and_a_bad_merge_is_invalid(tmp_path: Path) -> None:
    img = load_image(_photo(tmp_path))
    ladder = Policy(CROP_LADDER, Thresholds(overall=0.9))
    none = FakeBackend([_marks()], prob=0.6)
    esc = escalate(BOXES, [img], ladder, {"local": EngineRunner(Engine(none))}, Ledger(Budget()))
    assert esc.steps[1].outcome == "skipped" and "no box regions" in (esc.steps[1].note or "") and esc.review
    two = _marks(("dent", [0, 0, 100, 100]), ("dent", [500, 500, 600, 600]))
    over = FakeBackend([two, two, two], prob=0.6)  # 2 regions x 2 marks > maxItems 3: cut back to 3
    esc = escalate(BOXES, [img], ladder, {"local": EngineRunner(Engine(over))}, Ledger(Budget()))
    assert esc.steps[1].status == "ok" and len(esc.result.data["marks"]) == 3
    schema = json.loads(json.dumps(BOXES.schema))  # the same limit behind a $ref is not cut back: the check catches it
    schema["$defs"] = {"marks": schema["properties"]["marks"]}
    schema["properties"]["marks"] = {"$ref": "#/$defs/marks"}
    esc = escalate(
        replace(BOXES, schema=schema),
        [img],
        ladder,
        {"local": EngineRunner(Engine(FakeBackend([two, two, two], prob=0.6)))},
        Ledger(Budget()),
    )
    assert esc.steps[1].status == "invalid" and "merged regions break the schema" in (esc.steps[1].note or "")
    assert esc.result.status is Status.OK and len(esc.result.data["marks"]) == 2  # the low pass is kept


def test_crop_rung_on_the_real_tiny_model(tiny_models: dict[str, SyntheticModel], tmp_path: Path) -> None:
    """The first look is scripted (two marks with an area: the random model's own boxes have none, and a box
    without an area is no region to crop); the crop rung runs the real tiny model on each region."""
    from loupe.backends.llama_cpp import LlamaCppBackend

    m = tiny_models["smolvlm"]
    img = load_image(_photo(tmp_path, (320, 240)))
    first = Engine(FakeBackend([_marks(("scratch", [100, 100, 400, 300]), ("dent", [500, 600, 800, 900]))]))
    ladder = (Step("scripted", "low"), Step.parse("local@crop"))
    with Engine(LlamaCppBackend(m.text_path, m.mmproj_path, n_threads=1, n_ctx=4096)) as local:
        esc = escalate(
            BOXES,
            [img],
            Policy(ladder, Thresholds(overall=0.999)),
            {"scripted": EngineRunner(first), "local": EngineRunner(local)},
            Ledger(Budget()),
        )
    low, crop = esc.steps
    assert low.status == "ok" and low.outcome == "escalated"
    assert crop.step == "local@crop" and crop.status == "ok" and crop.crops and len(crop.crops) == 2
    windows = [c["window_px"] for c in crop.crops]
    assert len(windows) == len({tuple(w) for w in windows})  # one look per distinct region
    assert esc.result.images[0].width == 320  # kept: the merged crop answer, in image pixels
    sizes = {i.id: (i.width, i.height) for i in esc.result.images}
    answered = all_boxes(esc.result.data, sizes)  # every box_2d the crops answered, in image pixels
    assert answered
    for box in answered:  # every box the crops found lies inside the window it was found in
        assert any(
            x0 - 1 <= min(box.pixels[0], box.pixels[2])
            and max(box.pixels[0], box.pixels[2]) <= x1 + 1
            and y0 - 1 <= min(box.pixels[1], box.pixels[3])
            and max(box.pixels[1], box.pixels[3]) <= y1 + 1
            for x0, y0, x1, y1 in windows
        )
    flat = invalid_boxes(esc.result.data, sizes)  # the random model's flat answers: flagged, not drawn
    assert len(esc.result.boxes) == len(answered) - len(flat)
    assert all(esc.result.confidence[f"{b.pointer}/{i}"] == 0.0 for b in flat for i in range(4))


def test_cloud_crop_rung_sends_only_the_regions(
    stub: StubCloud, make_cloud: Callable[..., CloudBackend], store: Store, tmp_path: Path
) -> None:
    """A cloud@crop rung: each region leaves the machine on its own (seen by the server), audited per request."""
    img = load_image(_photo(tmp_path))
    stub.script = [completion(_marks(("dent", [0, 0, 1000, 1000])))]
    local = Engine(FakeBackend([_marks(("scratch", [100, 200, 300, 400]), ("dent", [500, 500, 1000, 1000]))], prob=0.6))
    cloud = make_cloud(max_side=2048)
    runners = {"local": EngineRunner(local), "cloud": EngineRunner(Engine(cloud), cloud=True, audit=cloud.audit)}
    policy = Policy((Step("local", "low"), Step.parse("cloud@crop")), Thresholds(overall=0.9), cloud_enabled=True)
    esc = escalate(BOXES, [img], policy, runners, Ledger(Budget(max_calls_per_job=5)))
    crop = esc.steps[1]
    assert crop.outcome == "accepted" and crop.calls == 2 and crop.cost_usd > 0
    assert [r.images[0].size for r in stub.received] == [(300, 150), (750, 375)]  # regions, not the whole image
    assert all(r.images[0].exif_tags == 0 for r in stub.received)
    assert [b.pixels for b in esc.result.boxes] == [(150, 25, 450, 175), (250, 125, 1000, 500)]
    assert len(audit_rows(store)) == 2 and {r["source_sha256"][0] for r in audit_rows(store)} == {img.sha256}


def test_merged_regions_keep_the_most_confident_items_within_max_items() -> None:
    """Three regions each finding two marks make six; the schema allows three: the three surest are kept, in order."""
    from loupe.escalate.crop import _cap, _merge

    answers = [
        (
            {"marks": [{"label": "dent", "box_2d": [0, 0, 1, 1]}, {"label": "scratch", "box_2d": [0, 0, 2, 2]}]},
            {"/marks/0/label": 0.9, "/marks/1/label": 0.2, "/marks/1/box_2d/0": 0.8},
        ),
        (
            {"marks": [{"label": "dent", "box_2d": [0, 0, 3, 3]}, {"label": "dent", "box_2d": [0, 0, 4, 4]}]},
            {"/marks/0/label": 0.3, "/marks/1/label": 0.95},
        ),
        (
            {"marks": [{"label": "scratch", "box_2d": [0, 0, 5, 5]}, {"label": "dent", "box_2d": [0, 0, 6, 6]}]},
            {"/marks/0/label": 0.7, "/marks/1/box_2d/3": 0.1},
        ),
    ]
    data, conf = _cap(*_merge(answers), BOXES.schema)
    assert [m["box_2d"][3] for m in data["marks"]] == [1, 4, 5]  # confidences 0.9, 0.95, 0.7 beat 0.2, 0.3, 0.1
    assert conf == {"/marks/0/label": 0.9, "/marks/1/label": 0.95, "/marks/2/label": 0.7}
    assert validation_errors(BOXES.schema, data) == []
