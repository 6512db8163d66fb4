"""The `loupe` command as a user runs it, on the real llama.cpp with a tiny synthetic model."""

from __future__ import annotations

import io
import json

import pytest
from loupe.cli import main


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def model_args(tiny_models) -> list[str]:
    m = tiny_models["smolvlm"]
    return ["--model-path", str(m.text_path), "--mmproj", str(m.mmproj_path), "--threads", "1"]


def test_batch_with_bad_inputs_reports_each_and_processes_the_rest(images, model_args):
    bad = ["text_as_jpg", "truncated_png", "empty", "bomb", "missing"]
    paths = [str(images["jpeg"])] + [str(images[b]) for b in bad] + [str(images["png"])]
    code, out, err = run("analyze", *paths, "--task", "describe", *model_args)
    assert code == 1
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in lines] == ["ok"] + ["error"] * len(bad) + ["ok"]
    errors = err.strip().splitlines()
    assert len(errors) == len(bad) and all(e.startswith("error: ") for e in errors)
    for name, expected in zip(
        bad, ["not an image", "truncated", "empty file", "decompression bomb", "no such file"], strict=True
    ):
        line = next(e for e in errors if str(images[name]) in e)
        assert expected in line
    assert "Traceback" not in err


def test_folder_is_walked_and_results_appended_to_out(tmp_path, images, model_args):
    folder = tmp_path / "shots"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    for target in (folder / "a.jpg", folder / "sub" / "b.png", folder / ".hidden" / "c.jpg"):
        target.write_bytes(images["jpeg"].read_bytes())
    (folder / "readme.txt").write_text("not an image")
    out_file = tmp_path / "results.jsonl"
    code, out, _ = run("analyze", str(folder), "--task", "product", "--out", str(out_file), *model_args)
    assert code == 0
    records = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert sorted(r["images"][0]["path"].split("/")[-1] for r in records) == ["a.jpg", "b.png"]
    assert all(r["status"] == "ok" for r in records) and ": ok (" in out


def test_together_sends_one_request(images, model_args):
    code, out, _ = run(
        "analyze", str(images["jpeg"]), str(images["png"]), "--together", "--task", "describe", "--json", *model_args
    )
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [i["id"] for i in record["images"]] == ["img_01", "img_02"]


def test_invalid_schema_in_task_file_is_one_line_with_pointer(tmp_path, images, model_args):
    task = tmp_path / "bad.yaml"
    task.write_text("instructions: x\nschema:\n  type: object\n  properties:\n    n: {type: integr}\n")
    code, out, err = run("analyze", str(images["jpeg"]), "--task-file", str(task), *model_args)
    assert code == 2 and out == ""
    assert (
        err.strip() == f"error: {task}: invalid JSON Schema: 'integr' is not valid under any of the given "
        "schemas at /schema/properties/n/type"
    )


def test_missing_mmproj_is_one_line(images, tiny_models, tmp_path):
    m = tiny_models["smolvlm"]
    code, _, err = run(
        "analyze", str(images["jpeg"]), "--model-path", str(m.text_path), "--mmproj", str(tmp_path / "gone.gguf")
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not found" in err


def test_demo_without_weights_falls_back_to_synthetic_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_MODEL_DIR", str(tmp_path / "models"))
    code, out, err = run("demo", "--json", "--threads", "1")
    assert code == 0
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["status"] == "ok" and record["model"] == "synthetic-smolvlm"
    assert "meaningless" in err and "loupe models pull" in err
    assert record["images"][0]["width"] == 800


def test_tasks_and_models_list_json(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_MODEL_DIR", str(tmp_path / "models"))
    code, out, _ = run("tasks", "--json")
    assert code == 0 and {t["name"] for t in json.loads(out)} >= {"defects", "product", "receipt", "describe"}
    code, out, _ = run("models", "list", "--json")
    names = {m["name"]: m for m in json.loads(out)}
    assert code == 0 and names["smolvlm-256m"]["state"] == "missing" and "synthetic-gemma3" in names
