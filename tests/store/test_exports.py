"""Exports other tools import cleanly: pycocotools, the Label Studio SDK, pyarrow; degenerate boxes never exported."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from urllib.parse import unquote

import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.fake import FakeBackend
from loupe.batch import BatchRunner, open_job
from loupe.cli import main
from loupe.core.images.boxes import degenerate, find_boxes, flag_invalid, invalid_boxes
from loupe.core.tasks import Task
from loupe.core.types import Result
from loupe.desktop.exporting import KINDS, export
from loupe.export import FORMATS, TITLES, ExportOptions, format_for, schema_labels
from loupe.export.annotations import coco, labelstudio_config
from loupe.store import ReviewQueue, Store

from tests.store.conftest import make_images

# one box with no width once in pixels ([ymin 258, xmin 0, ymax 0, xmax 0]), one proper box
FLAT = (
    '{"defects": [{"label": "scratch", "box_2d": [258, 0, 0, 0], "severity": 2, "reason": "line"},'
    ' {"label": "dent", "box_2d": [600, 100, 900, 400], "severity": 4, "reason": "bump"}]}'
)
GOOD = '{"defects": [{"label": "stain", "box_2d": [100, 200, 500, 600], "severity": 1, "reason": "spot"}]}'
LABELS = ["scratch", "crack", "stain", "dent", "other"]  # the defects task's enum, in schema order


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def flat_db(tmp_path: Path, defects: Task) -> tuple[Path, dict[str, int]]:
    """A defects job over two images in a folder with a space: 000.png answered FLAT, 001 GOOD; ids by name."""
    folder = make_images(tmp_path / "my images", 2, size=96)
    backend = FakeBackend([FLAT, GOOD])
    engine = Engine(backend, model="fake")

    def analyze(path: str, task: Task) -> Result:
        return engine.analyze(AnalyzeRequest((path,), task))

    db = tmp_path / "s.db"
    with Store(db) as store:
        paths = sorted(str(p) for p in folder.iterdir())
        job, _ = open_job(store, inputs=[str(folder)], paths=paths, task=defects, model="fake", settings={}, launch={})
        BatchRunner(store, analyze).run(job.id)
        ids = {Path(s.path).name: s.id for s in store.results(job.id)}
    return db, ids


def test_degenerate_box_is_no_box_and_its_numbers_read_confidence_zero():
    data = json.loads(FLAT)
    sizes = {"img_01": (104, 96)}
    assert degenerate((0, 0, 0, 25)) and degenerate((5, 5, 9, 5)) and not degenerate((0, 0, 1, 1))
    assert [b.label for b in find_boxes(data, sizes)] == ["dent"]
    (bad,) = invalid_boxes(data, sizes)
    assert bad.pointer == "/defects/0/box_2d" and bad.pixels == (0, 0, 0, 25)
    conf = flag_invalid({"/defects/0/box_2d/0": 0.9, "/defects/0/label": 0.8}, data, sizes)
    assert conf == {**{f"/defects/0/box_2d/{i}": 0.0 for i in range(4)}, "/defects/0/label": 0.8}
    tiny = {"box_2d": [500, 500, 500, 504]}  # 4/1000 of 104 px rounds to nothing wide
    assert find_boxes(tiny, sizes) == () and len(invalid_boxes(tiny, sizes)) == 1


def test_degenerate_box_sends_the_result_to_review_and_no_export_holds_it(flat_db, tmp_path):
    db, ids = flat_db
    with Store(db) as store:
        flat = store.result(ids["000.png"])
        assert [b.label for b in flat.result.boxes] == ["dent"]  # the GUI draws what is here: no invisible box
        assert flat.result.confidence["/defects/0/box_2d/1"] == 0.0 and flat.result.min_confidence == 0.0
        assert [s.id for s in ReviewQueue(store).pending()] == [ids["000.png"]]  # 0.9 elsewhere: 001 needs nobody
        # a person's edit may hold one too: it is no box either
        edit = json.loads(GOOD)
        edit["defects"].append({"label": "crack", "box_2d": [10, 700, 400, 700], "severity": 3, "reason": "line"})
        ReviewQueue(store).edit(ids["001.png"], edit, who="tester")

    for fmt in ("coco", "labelstudio", "jsonl"):
        assert run("export", "--db", str(db), "--out", str(tmp_path / f"r.{fmt}.json"), "--format", fmt)[0] == 0
    coco = json.loads((tmp_path / "r.coco.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(names[a["category_id"]] for a in coco["annotations"]) == ["dent", "stain"]
    assert all(a["bbox"][2] > 0 and a["bbox"][3] > 0 and a["area"] > 0 for a in coco["annotations"])
    tasks = json.loads((tmp_path / "r.labelstudio.json").read_text())
    regions = [r for t in tasks for p in t["predictions"] + t.get("annotations", []) for r in p["result"]]
    assert sorted(r["value"]["rectanglelabels"][0] for r in regions) == ["dent", "stain", "stain"]
    assert all(r["value"]["width"] > 0 and r["value"]["height"] > 0 for r in regions)
    records = {Path(r["path"]).name: r for r in map(json.loads, (tmp_path / "r.jsonl.json").read_text().splitlines())}
    assert records["000.png"]["notes"] == {"/defects/0/box_2d": "box_invalid"}
    assert records["001.png"]["notes"] == {"/defects/1/box_2d": "box_invalid"}
    assert [b["label"] for b in records["001.png"]["boxes"]] == ["stain"]
    assert run("export", "--db", str(db), "--overlays", str(tmp_path / "ov"), "--json")[0] == 0  # draws only boxes


def test_coco_imports_with_pycocotools_and_keeps_category_ids_across_an_edit(flat_db, tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco")
    db, ids = flat_db
    first, second = tmp_path / "out" / "first.coco.json", tmp_path / "out" / "second.coco.json"
    first.parent.mkdir()  # the CLI writes into an existing folder (a missing one is a one-line error)
    code, out, _ = run("export", "--db", str(db), "--out", str(first), "--json")  # the format from the name
    assert code == 0 and json.loads(out)["format"] == "coco"
    assert json.loads(out)["image_root"] == str((tmp_path / "my images").resolve())
    with Store(db) as store:  # the only dent becomes "other": a label never seen before
        ReviewQueue(store).edit(ids["000.png"], json.loads(FLAT.replace('"dent"', '"other"')), who="tester")
    assert run("export", "--db", str(db), "--out", str(second))[0] == 0

    docs = [coco_api.COCO(str(path)) for path in (first, second)]
    for doc in docs:
        assert [(c["id"], c["name"]) for c in doc.loadCats(doc.getCatIds())] == list(enumerate(LABELS, start=1))
        root = Path(doc.dataset["info"]["image_root"])
        for image in doc.loadImgs(doc.getImgIds()):
            assert not Path(image["file_name"]).is_absolute() and (root / image["file_name"]).is_file()
        for ann in doc.loadAnns(doc.getAnnIds()):
            assert ann["area"] > 0 and doc.annToMask(ann).sum() > 0  # a box pycocotools can rasterise
    image = next(i["id"] for i in docs[0].dataset["images"] if i["file_name"] == "000.png")
    before = [a["category_id"] for a in docs[0].loadAnns(docs[0].getAnnIds(imgIds=[image]))]
    after = [a["category_id"] for a in docs[1].loadAnns(docs[1].getAnnIds(imgIds=[image]))]
    assert (before, after) == ([4], [5])  # dent -> other; stain (item 001) keeps id 3 in both
    assert {docs[0].anns[a]["category_id"] for a in docs[0].getAnnIds(catIds=[3])} == {3}
    assert docs[0].getAnnIds(catIds=[3]) and docs[1].getAnnIds(catIds=[3])

    root = tmp_path / "elsewhere"
    assert run("export", "--db", str(db), "--out", str(tmp_path / "r.coco.json"), "--image-root", str(root))[0] == 0
    doc = json.loads((tmp_path / "r.coco.json").read_text())
    assert doc["info"]["image_root"] == root.resolve().as_posix()
    assert sorted(i["file_name"] for i in doc["images"]) == ["../my images/000.png", "../my images/001.png"]


def test_labels_from_the_schema_then_extra_ones_after(flat_db):
    db, _ = flat_db
    with Store(db) as store:
        assert schema_labels(store.job(1).task.schema) == tuple(LABELS)
        results = store.results(1)
    alternatives = {"properties": {"box_2d": {}, "name": {"anyOf": [{"const": "b"}, {"const": "a"}]}}}
    assert schema_labels(alternatives) == ("b", "a")
    assert schema_labels({"properties": {"box_2d": {}, "label": {"type": "string"}}}) == ()
    # labels the schema does not name (another task's, or no enum at all) follow it, alphabetically
    doc = coco(results, ExportOptions(labels=("stain", "zebra")))
    assert [(c["id"], c["name"]) for c in doc["categories"]] == [(1, "stain"), (2, "zebra"), (3, "dent")]
    assert '<Label value="zebra"/>' in labelstudio_config(results, ExportOptions(labels=("stain", "zebra")))


def test_labelstudio_export_validates_with_the_sdk_against_its_config(flat_db, tmp_path):
    sdk = pytest.importorskip("label_studio_sdk.label_interface")
    db, ids = flat_db
    with Store(db) as store:
        ReviewQueue(store).accept(ids["001.png"], who="tester")
    out = tmp_path / "ls" / "tasks.json"
    out.parent.mkdir()  # the CLI writes into an existing folder (a missing one is a one-line error)
    code, report, _ = run("export", "--db", str(db), "--out", str(out), "--format", "labelstudio", "--json")
    assert code == 0
    config = out.with_name("tasks.config.xml")
    assert json.loads(report)["config"] == str(config) and json.loads(report)["image_url_prefix"] == (
        "/data/local-files/?d="
    )
    interface = sdk.LabelInterface(config.read_text())
    assert [label for labels in interface.labels for label in labels] == LABELS  # the schema's, in its order
    tasks = json.loads(out.read_text())
    assert len(tasks) == 2
    for task in tasks:
        assert interface.validate_task({"data": task["data"]})
        for part in task["predictions"] + task.get("annotations", []):
            assert interface.validate_prediction(part, return_errors=True) == []
    by_name = {Path(t["data"]["loupe_path"]).name: t for t in tasks}
    assert by_name["000.png"]["data"]["image"] == "/data/local-files/?d=000.png"
    assert "annotations" in by_name["001.png"] and "annotations" not in by_name["000.png"]

    # a stated prefix and root: the URL is the prefix + the path under the root, quoted
    prefix = "http://files.example/img/"
    code, _, _ = run(
        "export",
        "--db",
        str(db),
        "--out",
        str(tmp_path / "b.labelstudio.json"),
        "--image-url-prefix",
        prefix,
        "--image-root",
        str(tmp_path),
    )
    assert code == 0
    urls = sorted(t["data"]["image"] for t in json.loads((tmp_path / "b.labelstudio.json").read_text()))
    assert urls == [f"{prefix}my%20images/000.png", f"{prefix}my%20images/001.png"]
    assert (tmp_path / Path(unquote(urls[0].removeprefix(prefix)))).is_file()
    assert (tmp_path / "b.labelstudio.config.xml").is_file()


def test_csv_columns_are_json_pointers_and_parquet_reads_back_nested(flat_db, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    db, _ = flat_db
    assert run("export", "--db", str(db), "--out", str(tmp_path / "r.csv"))[0] == 0
    with open(tmp_path / "r.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = {Path(r["path"]).name: r for r in reader}
        header = reader.fieldnames or []
    pointers = header[9:]
    assert pointers and all(p.startswith("/defects/") for p in pointers)
    assert [p for p in pointers if "/box_2d/" in p] == [f"/defects/{i}/box_2d/{k}" for i in (0, 1) for k in range(4)]
    assert rows["000.png"]["/defects/1/label"] == "dent" and rows["001.png"]["/defects/1/label"] == ""
    assert rows["000.png"]["/defects/0/box_2d/0"] == "258"  # the data as the model gave it: the box is only flagged

    assert run("export", "--db", str(db), "--out", str(tmp_path / "r.parquet"))[0] == 0
    table = pq.read_table(tmp_path / "r.parquet")
    rows = {Path(r["path"]).name: r for r in table.to_pylist()}
    assert rows["000.png"]["/defects"] == json.loads(FLAT)["defects"]
    assert rows["001.png"]["/defects"][0]["box_2d"] == [100, 200, 500, 600]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("r.jsonl", "jsonl"),
        ("r.ndjson", "jsonl"),
        ("R.CSV", "csv"),
        ("r.parquet", "parquet"),
        ("r.coco.json", "coco"),
        ("coco.json", "coco"),
        ("r.labelstudio.json", "labelstudio"),
    ],
)
def test_format_from_the_name(name, expected):
    assert format_for(name) == expected


def test_unknown_format_is_a_one_line_error_and_writes_nothing(flat_db, tmp_path):
    db, _ = flat_db
    for name, says in (("results.xlsx", "'.xlsx'"), ("results.json", "COCO or Label Studio"), ("results", "suffix")):
        code, out, err = run("export", "--db", str(db), "--out", str(tmp_path / name))
        assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith("error: cannot tell the export format from ") and says in err and "--format" in err
        assert not (tmp_path / name).exists()
    assert run("export", "--db", str(db), "--out", str(tmp_path / "results.xlsx"), "--format", "csv")[0] == 0


def test_the_window_offers_every_format_the_cli_writes(flat_db, tmp_path):
    db, _ = flat_db
    assert set(FORMATS) <= set(KINDS) and set(TITLES) == set(FORMATS)
    for kind in FORMATS:
        summary = export(db, [], tmp_path / f"w-{kind}", kind)
        assert summary.startswith("2 result(s) written") and (tmp_path / f"w-{kind}").is_file()
    assert (tmp_path / "w-labelstudio.config.xml").is_file()
