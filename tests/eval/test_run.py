"""`loupe eval` end to end on the tiny synthetic models: a model and a two-model ladder, report, cache, thresholds."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from loupe.cli import main
from loupe.core.tasks import load_task_file
from loupe.desktop.widgets.review_panel import pending_everywhere
from loupe.store import ReviewQueue, Store
from PIL import Image


def _eval(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["eval", *args], out, err)
    return code, out.getvalue(), err.getvalue()


def test_ladder_report_reads_back_plots_open_cache_is_used_and_thresholds_written(
    model_dir: Path, digit_task_file: Path, digit_set: Path, tmp_path: Path
):
    out_dir, db = tmp_path / "report", tmp_path / "loupe.db"
    args = [
        str(digit_set),
        "--task-file",
        str(digit_task_file),
        "--model",
        "tiny-a",
        "--ladder",
        "tiny-a@low,tiny-b@low",
        "--out",
        str(out_dir),
        "--db",
        str(db),
        "--threads",
        "1",
        "--fit-thresholds",
        "--target-accuracy",
        "0.9",
        "--write-task",
        "--json",
    ]
    code, out, err = _eval(*args)
    assert code == 0, err
    brief = json.loads(out)
    doc = json.loads((out_dir / "report.json").read_text())
    assert [s["system"] for s in doc["systems"]] == ["tiny-a", "ladder tiny-a@low > tiny-b@low"]
    assert doc["images"] == 3 and doc["task"] == "digit"
    model, ladder = doc["systems"]
    assert model["images"] == 3 and model["cached"] == 0 and model["latency_ms"]["measured"] == 3
    assert {f["field"] for f in model["fields"]} == {"/n"}
    assert 0 <= model["record_accuracy"] <= 1 and model["tokens_per_image"]["completion"] > 0
    assert set(model["calibration"]) == {"/n", "(whole record)"}
    assert ladder["cached"] == 0  # a ladder is its own cache entry: its answer depends on every rung and threshold
    steps = {s["step"]: s for s in ladder["steps"]}
    assert set(steps) == {"tiny-a@low", "tiny-b@low"}
    assert steps["tiny-a@low"]["runs"] == 3 and steps["tiny-a@low"]["escalated"] == 3  # 0.99 is never reached
    assert steps["tiny-b@low"]["runs"] == 3 and steps["tiny-b@low"]["mean_ms"] > 0
    assert steps["tiny-b@low"]["tokens_per_run"]["completion"] > 0
    assert steps["tiny-a@low"]["tokens_per_run"]["image"] > 0
    fit = ladder["fit"]  # what escalating costs: the share that climbs x the second rung's time
    assert fit["escalated_ms_per_image"] == pytest.approx(fit["escalation_rate"] * steps["tiny-b@low"]["mean_ms"])
    # every plot is a real PNG, and the HTML carries them inline
    pngs = sorted((out_dir / "plots").glob("*.png"))
    assert {p.name for p in pngs} >= {
        "cost.png",
        "1-tiny-a-reliability.png",
        "1-tiny-a-coverage.png",
        "2-ladder-tiny-a-low-tiny-b-low-coverage.png",
    }
    for p in pngs:
        with Image.open(p) as im:
            im.verify()
    page = (out_dir / "report.html").read_text()
    inline = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(inline) == len(pngs) and "http" not in page.replace("http-equiv", "")
    with Image.open(io.BytesIO(base64.b64decode(inline[0]))) as im:
        assert im.format == "PNG" and im.width > 100
    # thresholds were fitted and written into the task file, which still loads
    fields = load_task_file(digit_task_file).escalation["thresholds"]["fields"]
    assert set(fields) == {"/n"} and fields["/n"] == brief["systems"][0]["fit"]["fields"]["/n"]
    assert brief["task_written"] == str(digit_task_file)

    # run again: the model is answered from the store; the ladder runs anew, since the task's thresholds changed
    code, out, err = _eval(*args[:-4], "--json")
    assert code == 0, err
    again = json.loads((out_dir / "report.json").read_text())
    assert [s["cached"] for s in again["systems"]] == [3, 0]
    assert again["systems"][0]["record_accuracy"] == model["record_accuracy"]
    code, out, err = _eval(*args[:-4], "--json")
    assert [s["cached"] for s in json.loads((out_dir / "report.json").read_text())["systems"]] == [3, 3]


def test_usage_mistakes_are_one_line(model_dir: Path, digit_task_file: Path, digit_set: Path, tmp_path: Path):
    code, _, err = _eval(str(digit_set), "--task", "defects", "--write-task", "--fit-thresholds")
    assert code == 2 and "--write-task needs" in err
    code, _, err = _eval(str(tmp_path / "nothing.jsonl"), "--task-file", str(digit_task_file))
    assert code == 2 and "nothing.jsonl" in err and err.count("\n") == 1
    code, _, err = _eval(str(digit_set), "--task-file", str(digit_task_file), "--target-accuracy", "98")
    assert code == 2 and "(0, 1]" in err


def test_images_batched_before_are_answered_from_the_store(
    model_dir: Path, digit_task_file: Path, digit_set: Path, tmp_path: Path
):
    db = str(tmp_path / "loupe.db")
    out, err = io.StringIO(), io.StringIO()
    assert (
        main(
            [
                "batch",
                str(digit_set.parent / "images"),
                "--task-file",
                str(digit_task_file),
                "--model",
                "tiny-a",
                "--threads",
                "1",
                "--db",
                db,
                "--json",
            ],
            out,
            err,
        )
        == 0
    ), err.getvalue()
    code, out_text, err_text = _eval(
        str(digit_set),
        "--task-file",
        str(digit_task_file),
        "--model",
        "tiny-a",
        "--out",
        str(tmp_path / "r"),
        "--db",
        db,
    )
    assert code == 0, err_text
    assert "tiny-a: whole-record accuracy" in out_text and "(3 from the store)" in out_text
    assert "report:" in err_text and (tmp_path / "r" / "report.html").is_file()
    # the evaluation's own job is newer than the batch, yet the review queue stays the batch's
    with Store(db) as store:
        queue = ReviewQueue(store)
        jobs = store.jobs()
        assert len(jobs) == 2 and "eval" in jobs[-1].launch
        assert queue.latest_job().id == jobs[0].id
        batch_pending = queue.pending(jobs[0].id)
        assert batch_pending and queue.pending(jobs[1].id)  # both jobs hold doubtful results
        assert [s.id for s in queue.pending()] == [s.id for s in batch_pending]
        assert all(s.job_id == jobs[0].id for s in pending_everywhere(store))
