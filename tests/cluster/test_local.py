"""`loupe batch --ray` on a real Ray cluster started in this process: the same results as a local batch, resumes
across both, the store's cache by content, a killed actor, and the hybrid ladder with one budget on the driver."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import threading
from pathlib import Path

import pytest
from loupe.cli.main import parser
from loupe.cli.store import _start
from loupe.cluster.driver import ClusterOptions, run_cluster_job
from loupe.cluster.modelref import model_ref
from loupe.cluster.rows import ItemAnswer
from loupe.models.synthetic import SyntheticModel
from loupe.store import Store

from tests.cluster.conftest import run_cli
from tests.store.conftest import DIGIT_TASK, make_images

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def digit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("task") / "digit.json"
    path.write_text(json.dumps(DIGIT_TASK))
    return path


@pytest.fixture(scope="module")
def model(tiny_models: dict[str, SyntheticModel]) -> list[str]:
    m = tiny_models["smolvlm"]
    return ["--model-path", str(m.text_path), "--mmproj", str(m.mmproj_path)]


def answers(db: Path, job: int) -> list[tuple[str, str, str | None, float | None, str]]:
    """(file name, status, data, lowest confidence, confidence) per item of a job, in item order."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT i.path, r.status, r.data, r.min_confidence, r.confidence FROM items i JOIN results r"
            " ON r.item_id = i.id WHERE i.job_id = ? ORDER BY i.seq",
            (job,),
        ).fetchall()
    finally:
        conn.close()
    return [(Path(p).name, s, d, m, c) for p, s, d, m, c in rows]


def once_each(db: Path) -> tuple[int, int, str]:
    """(items, results, integrity): every item has exactly one result when the first two are equal."""
    conn = sqlite3.connect(db)
    try:
        items = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        per_item = conn.execute("SELECT MAX(n) FROM (SELECT COUNT(*) n FROM results GROUP BY item_id)").fetchone()[0]
        results = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        assert per_item == 1
        return items, results, conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_same_results_as_a_local_batch_then_a_rerun_sends_nothing(tmp_path: Path, digit: Path, model: list[str]):
    folder = make_images(tmp_path / "imgs", 4)
    shutil.copy(folder / "001.png", folder / "zz-copy-of-001.png")  # same bytes: answered from the store
    argv = ["batch", str(folder), "--task-file", str(digit), *model, "--json"]
    code, out, err = run_cli(*argv, "--threads", "1", "--db", str(tmp_path / "local.db"))
    assert code == 0, err
    local = json.loads(out)
    code, out, err = run_cli(*argv, "--ray", "--actor-threads", "1", "--db", str(tmp_path / "ray.db"))
    assert code == 0 and err == "", err  # nothing from Ray on the terminal
    ray_run = json.loads(out)
    assert {k: ray_run[k] for k in local} == local and local["cached"] == 1
    assert ray_run["sent"] == 4 and ray_run["actors"] == 2 and ray_run["actor_threads"] == 1
    assert answers(tmp_path / "ray.db", 1) == answers(tmp_path / "local.db", 1)

    code, out, _ = run_cli(*argv, "--ray", "--db", str(tmp_path / "ray.db"))  # the same again: all from the store
    again = json.loads(out)
    assert code == 0 and again["sent"] == 0 and again["cached_now"] == 5 and again["done"] == 5

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(folder / "002.png", other / "renamed.png")
    code, out, _ = run_cli("batch", str(other), *argv[2:], "--ray", "--db", str(tmp_path / "ray.db"))
    moved = json.loads(out)
    assert code == 0 and moved["sent"] == 0 and moved["cached"] == 1
    assert answers(tmp_path / "ray.db", 3)[0][1:] == answers(tmp_path / "local.db", 1)[2][1:]


def _job(db: Path, argv: list[str]) -> tuple[Store, int]:
    """A job created exactly as `loupe batch ARGV` creates it (not run yet)."""
    store = Store(db)
    job_id, _ = _start(store, parser().parse_args(["batch", *argv]))
    return store, job_id


def test_a_job_stopped_on_ray_finishes_locally_and_one_stopped_locally_finishes_on_ray(
    tmp_path: Path, digit: Path, model: list[str], tiny_models: dict[str, SyntheticModel]
):
    folder = make_images(tmp_path / "imgs", 5, seed=3)
    argv = [str(folder), "--task-file", str(digit), *model, "--threads", "1"]
    db = tmp_path / "s.db"
    store, job_id = _job(db, argv)
    m = tiny_models["smolvlm"]
    ref = model_ref(m.text_path.stem, [m.text_path, m.mmproj_path], catalog=False)
    stop = threading.Event()
    with store:
        summary = run_cluster_job(store, job_id, ref, ClusterOptions(threads=1), on_item=lambda _: stop.set(), stop=stop)
        assert summary.batch.stopped and 1 <= summary.batch.done < 5 and store.job(job_id).state == "interrupted"
    code, out, err = run_cli("batch", "--resume", str(job_id), "--db", str(db), "--json")  # finished locally
    assert code == 0 and json.loads(out)["done"] == 5, err

    code, out, _ = run_cli("batch", *argv, "--db", str(tmp_path / "ref.db"), "--json")
    assert code == 0
    assert answers(db, job_id) == answers(tmp_path / "ref.db", 1)

    more = make_images(tmp_path / "more", 3, seed=4)
    db2 = tmp_path / "s2.db"
    store, job_id = _job(db2, [str(more), *argv[1:]])
    with store:
        store.set_state(job_id, "interrupted")  # as a local run stopped before its first image leaves it
    code, out, err = run_cli("batch", "--resume", str(job_id), "--db", str(db2), "--ray", "--json")
    assert code == 0 and json.loads(out)["sent"] == 3 and json.loads(out)["done"] == 3, err
    assert once_each(db2) == (3, 3, "ok")


def test_a_killed_actor_reruns_only_its_item_and_every_item_is_stored_once(
    tmp_path: Path, digit: Path, model: list[str], tiny_models: dict[str, SyntheticModel]
):
    folder = make_images(tmp_path / "imgs", 6, seed=7)
    db = tmp_path / "s.db"
    store, job_id = _job(db, [str(folder), "--task-file", str(digit), *model])
    m = tiny_models["smolvlm"]
    ref = model_ref(m.text_path.stem, [m.text_path, m.mmproj_path], catalog=False)
    killed: list[int] = []

    def kill_one(answer: ItemAnswer) -> None:
        if not killed:  # after the first answer: the other actor (or this one, on its next item) dies
            pid = int(answer.worker.rsplit("/", 1)[1])
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    with store:
        summary = run_cluster_job(store, job_id, ref, ClusterOptions(threads=1), on_answer=kill_one)
    assert killed and summary.batch.done == 6 and summary.sent == 6
    assert len(summary.workers) >= 3, summary.workers  # the killed actor came back (a new pid) and answered
    assert once_each(db) == (6, 6, "ok")
    code, out, _ = run_cli("batch", "--resume", str(job_id), "--db", str(db), "--ray", "--json")
    assert code == 0 and json.loads(out)["sent"] == 0
