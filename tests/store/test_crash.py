"""Child processes running `loupe batch` are killed (SIGKILL) or interrupted (SIGINT); nothing is lost or redone."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.store.conftest import REPO, batch_command, make_images, result_count

N_IMAGES = 100
N_KILLS = 12


def _wait_for_results(proc: subprocess.Popen[str], db: Path, at_least: int, limit_s: float = 60.0) -> None:
    """Until the child has committed `at_least` results or exited. A child process cannot signal us, so this
    polls the row count in a bounded loop; each short wait is proc.wait, which returns as soon as it exits."""
    deadline = time.monotonic() + limit_s
    while result_count(db) < at_least and proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.01)


def _snapshot(db: Path) -> dict[int, tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT id, item_id, status, data, raw, confidence, cache_key FROM results").fetchall()
    except sqlite3.OperationalError:  # killed before the schema was written
        rows = []
    conn.close()
    return {r[0]: r for r in rows}


def _job_id(db: Path) -> int | None:
    if not db.exists():
        return None
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT MAX(id) FROM jobs").fetchone()
    except sqlite3.OperationalError:
        row = None
    conn.close()
    return None if row is None else row[0]


def test_sigkill_at_random_moments_loses_and_repeats_nothing(tmp_path, model_args, digit_task):
    rng = random.Random(20250401)
    folder = make_images(tmp_path / "imgs", N_IMAGES, size=12)
    db = tmp_path / "crash.db"
    fresh = batch_command(str(folder), "--task-file", str(digit_task), *model_args, "--db", str(db), "--json")
    committed: dict[int, tuple[object, ...]] = {}
    kills = observed = 0
    while kills < N_KILLS:
        job = _job_id(db)
        # restart either as a plain re-run of the same command or with --resume JOB
        cmd = (
            batch_command("--resume", str(job), "--db", str(db), "--json", "--threads", "1")
            if job is not None and kills % 2
            else fresh
        )
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = len(committed)
        _wait_for_results(proc, db, seen + rng.randint(0, 8))  # 0: killed while starting or planning
        try:
            proc.wait(timeout=rng.uniform(0.0, 0.05))  # then a random moment, usually inside an item
        except subprocess.TimeoutExpired:
            observed = result_count(db)
            proc.kill()
            kills += 1
        proc.communicate()
        if proc.returncode == 0:
            break  # it finished before the kill landed
        assert proc.returncode == -signal.SIGKILL
        now = _snapshot(db)
        assert len(now) >= observed  # nothing seen committed before the kill went missing
        assert all(now.get(rid) == row for rid, row in committed.items())  # every committed result intact
        committed = now
    assert kills >= 10, f"only {kills} kills landed before the batch finished"

    final = subprocess.run(fresh, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout.splitlines()[-1])
    assert summary["items"] == summary["done"] == N_IMAGES and summary["cached"] == 0
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*), MAX(id) FROM jobs").fetchone() == (1, summary["job"])  # resumed, never new
    paths = [r[0] for r in conn.execute("SELECT i.path FROM items i JOIN results r ON r.item_id = i.id")]
    assert sorted(Path(p).name for p in paths) == sorted(p.name for p in folder.iterdir())  # exactly one each
    assert conn.execute("SELECT COUNT(*) FROM items WHERE state != 'done'").fetchone()[0] == 0
    conn.close()
    final_rows = _snapshot(db)
    assert all(final_rows[rid] == row for rid, row in committed.items())


def test_ctrl_c_stops_after_the_current_item_with_it_committed(tmp_path, model_args, digit_task):
    folder = make_images(tmp_path / "imgs", 40, seed=5)
    db = tmp_path / "sigint.db"
    cmd = batch_command(str(folder), "--task-file", str(digit_task), *model_args, "--db", str(db), "--json")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_results(proc, db, 3)
    proc.send_signal(signal.SIGINT)
    # Counted after sending: the child commits nothing more without running Python, and the handler runs first,
    # so whenever it handled the signal, at most the item in hand is committed after this count.
    at_signal = result_count(db)
    out, err = proc.communicate(timeout=60)
    after = result_count(db)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "stopping after the current image" in err and "loupe batch --resume 1" in err
    assert at_signal <= after <= at_signal + 1 and after < 40  # the current item finished, no further one started
    summary = json.loads(out.splitlines()[-1])
    assert summary["done"] == after and summary["items"] == 40
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT state FROM jobs WHERE id = 1").fetchone()[0] == "interrupted"
    assert conn.execute("SELECT COUNT(*) FROM items WHERE state = 'done'").fetchone()[0] == after
    conn.close()

    rest = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rest.returncode == 0 and json.loads(rest.stdout.splitlines()[-1])["done"] == 40
    assert result_count(db) == 40


def test_a_full_disk_mid_batch_is_one_line_and_the_job_resumes_after(tmp_path):
    """SQLite's own "database or disk is full" (SQLITE_FULL), made by capping the file's pages on the store's
    connection: the batch stops with one line naming the store, nothing committed is lost, and it resumes."""
    from loupe.api import AnalyzeRequest, Engine
    from loupe.backends.fake import FakeBackend
    from loupe.batch import BatchRunner, open_job
    from loupe.core.errors import LoupeError
    from loupe.core.tasks import builtin_task
    from loupe.store import Store

    from tests.store.conftest import DEFECTS_OUT, make_images

    folder = make_images(tmp_path / "imgs", 40)
    task = builtin_task("defects")
    engine = Engine(FakeBackend([DEFECTS_OUT]), model="fake")

    def analyze(path, t):
        return engine.analyze(AnalyzeRequest((path,), t))

    db = tmp_path / "s.db"
    with Store(db) as store:
        paths = sorted(str(p) for p in folder.iterdir())
        job, _ = open_job(store, inputs=[str(folder)], paths=paths, task=task, model="fake", settings={}, launch={})
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages + 3}")  # room for a few results, not forty
        try:
            BatchRunner(store, analyze).run(job.id)
        except LoupeError as exc:
            message = str(exc)
        else:
            raise AssertionError("the store never filled up")
        assert "\n" not in message and str(db) in message and "full" in message
        done = store.counts(job.id)["done"]
        assert 0 < done < 40 and store.integrity() == "ok"
        store.conn.execute("PRAGMA max_page_count = 1073741823")  # space again
        summary = BatchRunner(store, analyze).run(job.id)
    assert summary.done == summary.items == 40
