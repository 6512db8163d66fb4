"""Labelled sets read from Loupe's own export (a real store), a JSONL of {image, data}, and COCO boxes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loupe.batch import BatchRunner, open_job
from loupe.core.tasks import builtin_task
from loupe.eval.labelled import LabelledSetError, box_list_key, coco_data, load_labelled
from loupe.export import write_labelled
from loupe.store import ReviewQueue, Store

from tests.store.conftest import DEFECTS_OUT, fake_analyze, make_images


def test_loupe_export_reads_back_with_its_task(tmp_path: Path):
    folder = make_images(tmp_path / "in", 2)
    paths = [str(p) for p in sorted(folder.iterdir())]
    task = builtin_task("defects")
    analyze, _ = fake_analyze([DEFECTS_OUT, DEFECTS_OUT])
    with Store(tmp_path / "loupe.db") as store:
        job, _ = open_job(store, inputs=paths, paths=paths, task=task, model="fake", settings={}, launch={})
        BatchRunner(store, analyze).run(job.id)
        first, second = store.results(job.id)
        queue = ReviewQueue(store)
        queue.accept(first.id, who="qa")
        queue.edit(second.id, {"defects": []}, who="qa")
        write_labelled(store, queue.labelled(job.id), tmp_path / "set")
    labelled = load_labelled(tmp_path / "set")
    assert labelled.kind == "loupe" and [t.name for t in labelled.tasks] == ["defects"]
    assert [i.data for i in labelled.items] == [json.loads(DEFECTS_OUT), {"defects": []}]  # the edit wins
    assert all(i.image.is_file() and i.image.parent.name == "images" for i in labelled.items)


def test_jsonl_paths_are_relative_to_the_file_and_mistakes_name_the_line(tmp_path: Path):
    make_images(tmp_path / "pics", 1)
    good = tmp_path / "labels.jsonl"
    good.write_text(json.dumps({"image": "pics/000.png", "data": {"n": 3}}) + "\n\n")
    labelled = load_labelled(good)
    assert labelled.kind == "jsonl" and labelled.items[0].data == {"n": 3}
    assert labelled.items[0].image == (tmp_path / "pics" / "000.png").resolve()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"image": "pics/000.png", "data": 1}) + "\n{oops\n")
    with pytest.raises(LabelledSetError, match=r"bad.jsonl:2: not JSON"):
        load_labelled(bad)
    bad.write_text(json.dumps({"image": "pics/nope.png", "data": 1}) + "\n")
    with pytest.raises(LabelledSetError, match=r"bad.jsonl:1: image not found"):
        load_labelled(bad)
    bad.write_text(json.dumps({"picture": "x"}) + "\n")
    with pytest.raises(LabelledSetError, match="`image` and `data`"):
        load_labelled(bad)
    bad.write_text("")
    with pytest.raises(LabelledSetError, match="empty"):
        load_labelled(bad)
    with pytest.raises(LabelledSetError, match="no such file"):
        load_labelled(tmp_path / "missing.json")
    with pytest.raises(LabelledSetError, match=r"labels\.jsonl"):
        load_labelled(tmp_path / "pics")


def test_coco_boxes_become_normalized_box_2d(tmp_path: Path):
    make_images(tmp_path, 1)
    doc = {
        "images": [{"id": 7, "file_name": "000.png", "width": 200, "height": 100}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 2, "bbox": [20, 10, 100, 50]}],
        "categories": [{"id": 2, "name": "scratch"}],
    }
    # x 20..120 of 200 px -> 100..600; y 10..60 of 100 px -> 100..600; order [ymin, xmin, ymax, xmax]
    assert coco_data(doc, "defects") == {7: {"defects": [{"label": "scratch", "box_2d": [100, 100, 600, 600]}]}}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(doc))
    key = box_list_key(builtin_task("defects").schema)
    assert key == "defects"
    labelled = load_labelled(path, list_key=key)
    assert labelled.kind == "coco" and labelled.items[0].data["defects"][0]["box_2d"] == [100, 100, 600, 600]
    path.write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))
    with pytest.raises(LabelledSetError, match="not a COCO detection file"):
        load_labelled(path)
