"""`loupe batch` in-process on the real llama.cpp with the tiny synthetic model."""

from __future__ import annotations

import io
import json
import sqlite3

from loupe.cli import main
from loupe.store import ReviewQueue, Store

from tests.store.conftest import make_images


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_batch_then_rerun_is_answered_from_the_store(tmp_path, model_args, digit_task, _private_db):
    folder = make_images(tmp_path / "imgs", 5)
    argv = ("batch", str(folder), "--task-file", str(digit_task), *model_args)
    code, out, err = run(*argv, "--json")  # no --db: $LOUPE_DB (a temp file here)
    assert code == 0 and "Traceback" not in err
    summary = json.loads(out.splitlines()[-1])
    with Store(_private_db) as store:
        queued = len(ReviewQueue(store).pending(1))
    assert summary == {"job": 1, "items": 5, "done": 5, "cached": 0, "errors": 0, "review": queued}
    conn = sqlite3.connect(_private_db)
    statuses = [r[0] for r in conn.execute("SELECT status FROM results")]
    assert len(statuses) == 5 and set(statuses) <= {"ok", "truncated", "invalid", "refused"}

    code, out, _ = run(*argv)  # the same command again: a new job, every image from the store
    assert code == 0 and out.startswith("job 2: 5 images, 5 done (5 from the store), 0 errors")
    first, second = (
        conn.execute(
            "SELECT data, raw FROM results r JOIN items i ON i.id = r.item_id WHERE i.job_id = ? ORDER BY i.seq", (j,)
        ).fetchall()
        for j in (1, 2)
    )
    assert first == second

    code, out, _ = run("batch", "--resume", "1", "--json")  # a finished job: nothing left to do
    assert code == 0 and json.loads(out)["done"] == 5 and json.loads(out)["job"] == 1
    assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 10


def test_bad_images_are_counted_and_reported_the_rest_processed(tmp_path, model_args, digit_task):
    folder = make_images(tmp_path / "imgs", 2)
    (folder / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    db = tmp_path / "s.db"
    code, out, err = run("batch", str(folder), "--task-file", str(digit_task), *model_args, "--db", str(db))
    assert code == 1 and out.startswith("job 1: 3 images, 3 done (0 from the store), 1 errors")
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and "zz-broken.png" in line


def test_usage_mistakes_are_one_line(tmp_path, model_args, digit_task):
    db = str(tmp_path / "s.db")
    code, _, err = run("batch", str(tmp_path), "--resume", "1", "--db", db)
    assert code == 2 and "--resume JOB runs the job's own inputs" in err
    code, _, err = run("batch", "--db", db)
    assert code == 2 and "give images or folders" in err
    code, _, err = run("batch", str(tmp_path), "--task-file", str(digit_task), *model_args, "--db", db)
    assert code == 2 and "no images found" in err
    make_images(tmp_path / "imgs", 1)
    code, _, err = run(
        "batch",
        str(tmp_path / "imgs"),
        "--model-path",
        str(tmp_path / "gone.gguf"),
        "--mmproj",
        str(tmp_path / "gone-mmproj.gguf"),
        "--db",
        db,
    )
    assert code == 2 and "model file not found" in err


def test_a_file_that_crashes_the_model_every_time_is_skipped_and_the_rest_finish(
    tmp_path, model_args, digit_task, monkeypatch
):
    """The worker really dies (SIGSEGV raised in the model process at the poison file's first token, the test-only
    hook of loupe.backends.worker_child); the batch gets an error for that file and goes on."""
    from loupe.backends.worker_child import FAULT_ENV
    from PIL import Image

    folder = make_images(tmp_path / "imgs", 3)
    Image.new("RGB", (40, 30), "red").save(folder / "001b-poison.png")
    monkeypatch.setenv(FAULT_ENV, "decode:SIGSEGV@40x30")
    db = tmp_path / "s.db"
    argv = ("batch", str(folder), "--task-file", str(digit_task), *model_args, "--db", str(db), "--json")
    code, out, err = run(*argv)
    assert code == 1 and "Traceback" not in err  # 1: some items are errors
    assert json.loads(out.splitlines()[-1])["items"] == 4
    assert {k: json.loads(out.splitlines()[-1])[k] for k in ("done", "errors")} == {"done": 4, "errors": 1}
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT i.path, r.status, r.error FROM items i JOIN results r ON r.item_id = i.id ORDER BY i.seq"
    ).fetchall()
    poison = [r for r in rows if r[0].endswith("poison.png")]
    assert len(poison) == 1 and poison[0][1] == "error"
    assert "the model process crashed (SIGSEGV)" in poison[0][2] and "crashed twice on this file" in poison[0][2]
    assert all(status != "error" for path, status, _ in rows if not path.endswith("poison.png"))
    _, out, err = run("batch", "--resume", "1", "--db", str(db), "--json")  # resume: the poison file is not tried
    assert json.loads(out.splitlines()[-1])["done"] == 4
    assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 4
