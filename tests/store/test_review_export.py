"""Review flow and every export format, through the CLI, reading each produced file back."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.fake import FakeBackend
from loupe.batch import BatchRunner, open_job
from loupe.cli import main
from loupe.core.tasks import Task
from loupe.core.types import Result
from loupe.export.images import COLORS
from loupe.export.rows import flatten
from loupe.store import ReviewQueue, Store
from PIL import Image

from tests.store.conftest import DEFECTS_OUT, make_images

PROBS = {"000.png": 0.9, "001.png": 0.3, "002.png": 0.5}  # defects' review_threshold is 0.6
FIXED = '{"defects": [{"label": "crack", "box_2d": [0, 0, 500, 500], "severity": 5, "reason": "seen by a person"}]}'


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def job_db(tmp_path: Path, defects: Task) -> tuple[Path, dict[str, int]]:
    """A finished defects job: one confident result, two unsure ones, one unreadable file; result ids by name."""
    folder = make_images(tmp_path / "imgs", 3, size=96)
    (folder / "broken.png").write_bytes(b"not an image")
    backend = FakeBackend([DEFECTS_OUT])
    engine = Engine(backend, model="fake")

    def analyze(path: str, task: Task) -> Result:
        backend.prob = PROBS.get(Path(path).name, 0.9)
        return engine.analyze(AnalyzeRequest((path,), task))

    db = tmp_path / "s.db"
    with Store(db) as store:
        paths = sorted(str(p) for p in folder.iterdir())
        job, _ = open_job(store, inputs=[str(folder)], paths=paths, task=defects, model="fake", settings={}, launch={})
        BatchRunner(store, analyze).run(job.id)
        ids = {Path(s.path).name: s.id for s in store.results(job.id)}
    return db, ids


def test_review_list_edit_refused_then_valid_and_labelled_export(job_db, tmp_path):
    db, ids = job_db
    code, out, _ = run("review", "list", "--db", str(db), "--json")
    queue = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [q["result"] for q in queue] == [ids["broken.png"], ids["001.png"], ids["002.png"]]
    assert queue[1]["min_confidence"] == pytest.approx(0.3) and queue[0]["status"] == "error"

    bad = FIXED.replace('"crack"', '"rust"')
    code, out, err = run("review", "edit", str(ids["001.png"]), bad, "--db", str(db))
    assert code == 2 and out == ""
    assert err.startswith(f"error: edit of result {ids['001.png']} refused: does not match the schema: ")
    assert "/defects/0/label: 'rust' is not one of" in err
    code, _, err = run("review", "edit", str(ids["001.png"]), "{not json", "--db", str(db))
    assert code == 2 and "not JSON" in err
    code, _, err = run("review", "accept", str(ids["broken.png"]), "--db", str(db))
    assert code == 2 and "has no data to accept" in err

    fixed_file = tmp_path / "fixed.json"
    fixed_file.write_text(FIXED)
    code, _, _ = run("review", "edit", str(ids["001.png"]), f"@{fixed_file}", "--note", "was a crack", "--db", str(db))
    assert code == 0
    code, out, _ = run("review", "accept", str(ids["002.png"]), "--db", str(db))
    assert code == 0 and out == f"result {ids['002.png']}: accept recorded\n"
    assert run("review", "reject", str(ids["broken.png"]), "--db", str(db), "--json")[0] == 0
    assert run("review", "list", "--db", str(db))[1] == ""  # queue empty

    out_dir = tmp_path / "labelled"
    code, out, _ = run("export", "--labelled", "--out", str(out_dir), "--db", str(db), "--json")
    assert code == 0 and json.loads(out)["labelled"] == 2
    labels = [json.loads(line) for line in (out_dir / "labels.jsonl").read_text().splitlines()]
    by_source = {Path(rec["source"]).name: rec for rec in labels}
    assert set(by_source) == {"001.png", "002.png"}
    assert by_source["001.png"]["data"] == json.loads(FIXED) and by_source["001.png"]["decision"] == "edit"
    assert by_source["001.png"]["note"] == "was a crack" and by_source["002.png"]["data"] == json.loads(DEFECTS_OUT)
    for rec in labels:
        assert (out_dir / rec["image"]).read_bytes() == Path(rec["source"]).read_bytes()
    tasks = json.loads((out_dir / "tasks.json").read_text())
    assert [t["name"] for t in tasks.values()] == ["defects"]
    assert tasks[labels[0]["task_key"]]["schema"]["type"] == "object"


def _review_some(db: Path, ids: dict[str, int]) -> None:
    with Store(db) as store:
        ReviewQueue(store).edit(ids["001.png"], json.loads(FIXED), who="tester")
        ReviewQueue(store).reject(ids["002.png"], who="tester")


def test_jsonl_and_csv_exports_read_back(job_db, tmp_path):
    db, ids = job_db
    _review_some(db, ids)
    code, out, _ = run("export", "--db", str(db), "--out", str(tmp_path / "r.jsonl"), "--json")
    assert code == 0 and json.loads(out) == {
        "job": 1,
        "format": "jsonl",
        "out": str(tmp_path / "r.jsonl"),
        "written": 4,
    }
    records = {Path(r["path"]).name: r for r in map(json.loads, (tmp_path / "r.jsonl").read_text().splitlines())}
    assert records["000.png"]["data"] == json.loads(DEFECTS_OUT) and records["000.png"]["review"] is None
    edited = records["001.png"]
    assert edited["data"] == json.loads(FIXED) and edited["model_data"] == json.loads(DEFECTS_OUT)
    assert [b["label"] for b in edited["boxes"]] == ["crack"] and edited["review"]["who"] == "tester"
    assert records["broken.png"]["status"] == "error" and records["broken.png"]["data"] is None

    assert run("export", "--db", str(db), "--out", str(tmp_path / "r.csv"))[0] == 0  # format from the suffix
    with open(tmp_path / "r.csv", newline="") as f:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(f)}
    assert list(rows["000.png"])[:9] == [
        "job",
        "item",
        "result",
        "path",
        "sha256",
        "status",
        "min_confidence",
        "error",
        "review",
    ]
    data_columns = list(rows["000.png"])[9:]
    # one column per leaf, named by its JSON Pointer, arrays indexed
    leaves = {"/label", "/severity", "/reason", *(f"/box_2d/{k}" for k in range(4))}
    assert {c.removeprefix("/defects/0") for c in data_columns[:7]} == leaves  # item 0's leaves, then item 1's
    assert {c.removeprefix("/defects/1") for c in data_columns[7:]} == leaves and len(data_columns) == 14
    model = json.loads(DEFECTS_OUT)["defects"]
    for i, defect in enumerate(model):
        assert rows["000.png"][f"/defects/{i}/label"] == defect["label"]
        assert [int(rows["000.png"][f"/defects/{i}/box_2d/{k}"]) for k in range(4)] == defect["box_2d"]
        assert int(rows["000.png"][f"/defects/{i}/severity"]) == defect["severity"]
    assert rows["001.png"]["/defects/0/label"] == "crack" and rows["001.png"]["review"] == "edit"
    assert rows["001.png"]["/defects/1/label"] == ""  # the edit has one defect
    assert float(rows["000.png"]["min_confidence"]) == pytest.approx(0.9)
    assert all(rows["broken.png"][c] == "" for c in data_columns)


def test_flatten_names_nested_fields_by_pointer():
    data = {"merchant": {"name": "Café", "a/b": True}, "items": [{"x": 1}], "total": 9.5, "empty": {}}
    assert list(flatten(data)) == [
        ("/merchant/name", "Café"),
        ("/merchant/a~1b", True),
        ("/items/0/x", 1),
        ("/total", 9.5),
        ("/empty", "{}"),
    ]
    assert list(flatten([1, [2, {}]])) == [("/0", 1), ("/1/0", 2), ("/1/1", "{}")]
    assert list(flatten([])) == [("/", "[]")] and list(flatten(3)) == [("/", 3)]


def test_parquet_export_reads_back_with_pyarrow(job_db, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    db, ids = job_db
    _review_some(db, ids)
    assert run("export", "1", "--db", str(db), "--out", str(tmp_path / "r.parquet"), "--format", "parquet")[0] == 0
    table = pq.read_table(tmp_path / "r.parquet")
    assert str(table.schema.field("job").type) == "int64" and str(table.schema.field("min_confidence").type) == "double"
    rows = {Path(r["path"]).name: r for r in table.to_pylist()}
    assert rows["002.png"]["review"] == "reject" and rows["broken.png"]["min_confidence"] is None
    assert rows["001.png"]["/defects"][0]["severity"] == 5 and rows["001.png"]["/defects"][0]["label"] == "crack"
    kind = table.schema.field("/defects").type  # nested types: a list of structs, not JSON text
    assert pa.types.is_list(kind.value_type.field("box_2d").type)
    assert str(kind.value_type.field("box_2d").type.value_type) == "int64"
    assert str(kind.value_type.field("severity").type) == "int64"
    assert rows["000.png"]["/defects"] == json.loads(DEFECTS_OUT)["defects"] and rows["broken.png"]["/defects"] is None


def test_coco_export_has_pixel_xywh_boxes_and_label_categories(job_db, tmp_path):
    db, ids = job_db
    _review_some(db, ids)
    assert run("export", "--db", str(db), "--out", str(tmp_path / "coco.json"), "--format", "coco")[0] == 0
    doc = json.loads((tmp_path / "coco.json").read_text())
    assert set(doc) >= {"images", "annotations", "categories"}
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    assert cats == {1: "scratch", 2: "crack", 3: "stain", 4: "dent", 5: "other"}  # the schema's enum, in its order
    assert sorted(i["file_name"] for i in doc["images"]) == ["000.png", "001.png", "002.png"]  # relative to the root
    assert doc["info"]["image_root"] == (tmp_path / "imgs").resolve().as_posix()
    assert all((i["width"], i["height"]) == (104, 96) for i in doc["images"])
    with Store(db) as store:
        expected = store.result(ids["000.png"]).result.boxes
    image_id = next(i["id"] for i in doc["images"] if i["file_name"].endswith("000.png"))
    anns = [a for a in doc["annotations"] if a["image_id"] == image_id]
    assert [cats[a["category_id"]] for a in anns] == ["scratch", "dent"]
    for ann, box in zip(anns, expected, strict=True):
        x0, y0, x1, y1 = box.pixels
        assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0] and ann["area"] == (x1 - x0) * (y1 - y0)
    counts = {
        os.path.basename(i["file_name"]): sum(a["image_id"] == i["id"] for a in doc["annotations"])
        for i in doc["images"]
    }
    assert counts == {"000.png": 2, "001.png": 1, "002.png": 0}  # edited: the person's box; rejected: none
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])


def test_labelstudio_export_has_percent_rectangles(job_db, tmp_path):
    db, ids = job_db
    _review_some(db, ids)
    assert run("export", "--db", str(db), "--out", str(tmp_path / "ls.json"), "--format", "labelstudio")[0] == 0
    tasks = {os.path.basename(t["data"]["loupe_path"]): t for t in json.loads((tmp_path / "ls.json").read_text())}
    assert set(tasks) == {"000.png", "001.png", "002.png"}
    assert tasks["000.png"]["data"]["image"] == "/data/local-files/?d=000.png"  # Label Studio's local files
    (prediction,) = tasks["000.png"]["predictions"]
    region = prediction["result"][0]
    assert region["type"] == "rectanglelabels" and region["value"]["rectanglelabels"] == ["scratch"]
    assert (region["original_width"], region["original_height"]) == (104, 96)
    # box_2d [ymin 100, xmin 200, ymax 500, xmax 600] of 1000 -> about x 20 %, y 10 %, w 40 %, h 40 %
    value = region["value"]
    assert [value[k] for k in ("x", "y", "width", "height")] == pytest.approx([20, 10, 40, 40], abs=1.5)
    with Store(db) as store:
        x0, y0, _x1, y1 = store.result(ids["000.png"]).result.boxes[0].pixels
    assert value["x"] == pytest.approx(100 * x0 / 104) and value["height"] == pytest.approx(100 * (y1 - y0) / 96)
    assert "annotations" not in tasks["000.png"] and "annotations" not in tasks["002.png"]
    (annotation,) = tasks["001.png"]["annotations"]
    assert annotation["result"][0]["value"]["rectanglelabels"] == ["crack"]


def test_overlays_draw_each_box_in_its_color(job_db, tmp_path):
    db, _ = job_db
    code, out, _ = run("export", "--db", str(db), "--overlays", str(tmp_path / "ov"), "--select", "all", "--json")
    assert code == 0 and json.loads(out)["overlays"] == 3
    files = sorted((tmp_path / "ov").iterdir())
    assert [f.name.split("-", 1)[1] for f in files] == ["000.png", "001.png", "002.png"]
    with Store(db) as store:
        first = store.results(1)[0].result.boxes[0]
    img = Image.open(files[0]).convert("RGB")
    assert img.size == (104, 96)
    x0, y0, _x1, y1 = first.pixels
    assert img.getpixel((x0, (y0 + y1) // 2)) == COLORS[0]  # the left edge of the first box
    assert Image.open(tmp_path / "imgs" / "000.png").convert("RGB").getpixel((x0, (y0 + y1) // 2)) != COLORS[0]


def test_export_selection_and_usage_errors(job_db, tmp_path):
    db, _ids = job_db
    assert run("export", "--db", str(db), "--select", "review", "--out", str(tmp_path / "q.jsonl"))[0] == 0
    names = [Path(json.loads(line)["path"]).name for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert names == ["broken.png", "001.png", "002.png"]  # the review queue, lowest confidence first
    code, _, err = run("export", "--db", str(db))
    assert code == 2 and "--out" in err
    code, _, err = run("export", "9", "--db", str(db), "--out", str(tmp_path / "x.csv"))
    assert code == 2 and "no job 9" in err
    code, _, err = run("export", "--db", str(tmp_path / "empty.db"), "--out", str(tmp_path / "x.csv"))
    assert code == 2 and "no jobs" in err
