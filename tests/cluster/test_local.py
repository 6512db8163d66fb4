"""`loupe batch --ray` on a real Ray cluster started in this process: the same results as a local batch, resumes
across both, the store's cache by content, a killed actor, and the hybrid ladder with one budget on the driver."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest
from loupe.cluster.driver import ClusterOptions, run_cluster_job
from loupe.cluster.modelref import model_ref
from loupe.cluster.rows import ItemAnswer
from loupe.models.synthetic import SyntheticModel
from loupe.store import Store

from tests.cluster.conftest import answers, new_job, once_each, run_cli
from tests.store.conftest import make_images

pytestmark = pytest.mark.usefixtures("ray_local")


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


def test_a_job_stopped_on_ray_finishes_locally_and_one_stopped_locally_finishes_on_ray(
    tmp_path: Path, digit: Path, model: list[str], tiny_models: dict[str, SyntheticModel]
):
    folder = make_images(tmp_path / "imgs", 5, seed=3)
    argv = [str(folder), "--task-file", str(digit), *model, "--threads", "1"]
    db = tmp_path / "s.db"
    store, job_id = new_job(db, argv)
    m = tiny_models["smolvlm"]
    ref = model_ref(m.text_path.stem, [m.text_path, m.mmproj_path], catalog=False)
    stop = threading.Event()
    with store:
        summary = run_cluster_job(
            store, job_id, ref, ClusterOptions(threads=1), on_item=lambda _: stop.set(), stop=stop
        )
        assert summary.batch.stopped and 1 <= summary.batch.done < 5 and store.job(job_id).state == "interrupted"
    code, out, err = run_cli("batch", "--resume", str(job_id), "--db", str(db), "--json")  # finished locally
    assert code == 0 and json.loads(out)["done"] == 5, err

    code, out, _ = run_cli("batch", *argv, "--db", str(tmp_path / "ref.db"), "--json")
    assert code == 0
    assert answers(db, job_id) == answers(tmp_path / "ref.db", 1)

    more = make_images(tmp_path / "more", 3, seed=4)
    db2 = tmp_path / "s2.db"
    store, job_id = new_job(db2, [str(more), *argv[1:]])
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
    store, job_id = new_job(db, [str(folder), "--task-file", str(digit), *model])
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
    answered = {int(w.rsplit("/", 1)[1]): n for w, n in summary.workers.items()}
    assert answered[killed[0]] == 1 and sum(answered.values()) == 6  # nothing from the dead pid after, none twice
    assert once_each(db) == (6, 6, "ok")
    code, out, _ = run_cli("batch", "--resume", str(job_id), "--db", str(db), "--ray", "--json")
    assert code == 0 and json.loads(out)["sent"] == 0


def test_out_dir_gets_parquet_rows_from_the_workers_and_a_rerun_skips_them(
    tmp_path: Path, digit: Path, model: list[str]
):
    import pyarrow.parquet as pq
    from loupe.cluster.rows import JOB_FILE, from_row

    folder = make_images(tmp_path / "imgs", 3, seed=9)
    out_dir = tmp_path / "out"
    argv = ["batch", str(folder), "--task-file", str(digit), *model, "--ray", "--out", str(out_dir), "--json"]
    code, out, err = run_cli(*argv)
    assert code == 0 and json.loads(out)["written"] == 3, err
    job = json.loads((out_dir / JOB_FILE).read_text())
    assert set(job) == {"key", "task", "model", "settings", "launch", "inputs", "paths"} and len(job["paths"]) == 3
    rows = pq.read_table(out_dir).to_pylist()
    back = sorted((from_row(r) for r in rows), key=lambda a: a.item_id)
    assert [a.path for a in back] == job["paths"] and [a.item_id for a in back] == [0, 1, 2]
    assert all(a.result.status.value != "error" and a.sha256 and a.phashes for a in back)

    code, out, _ = run_cli(*argv)  # again: nothing left to do
    assert code == 0 and json.loads(out) | {"wall_s": 0} == {"items": 3, "written": 0, "skipped": 3, "wall_s": 0}
    make_images(folder, 1, seed=10, start=3)
    code, out, _ = run_cli(*argv)  # a new file in the inputs: only it is sent
    assert code == 0 and (json.loads(out)["written"], json.loads(out)["skipped"]) == (1, 3)
    assert len(pq.read_table(out_dir).to_pylist()) == 4


def test_mistakes_are_one_line(tmp_path: Path, digit: Path, model: list[str]):
    folder = make_images(tmp_path / "imgs", 1)
    argv = ["batch", str(folder), "--task-file", str(digit), *model, "--db", str(tmp_path / "s.db")]
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for extra, message in (
        (["--ray", f"127.0.0.1:{port}"], f"cannot reach the Ray cluster at 127.0.0.1:{port}"),
        (["--ray", "nowhere"], "--ray nowhere: give auto, HOST:PORT or ray://HOST:PORT"),
        (["--out", str(tmp_path / "o")], "--out, --actors, --actor-threads and --models-dir go with --ray"),
        (["--ray", "--actors", "0"], "--actors 0: give at least 1 actor per node"),
        (["--ray", "--out", str(tmp_path / "o")], "--out DIR writes Parquet, not a store"),
    ):
        code, _, err = run_cli(*argv, *extra)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (extra, err)


def test_the_hybrid_ladder_runs_on_the_driver_with_one_budget(
    tiny_models: dict[str, SyntheticModel], stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Workers run the local rung; the driver climbs to the stub cloud, and the job's budget (2 calls) holds for
    all of them whichever worker answered."""
    import loupe.core.secrets
    from loupe.escalate.audit import spend_history

    from tests.hybrid.test_cli_escalate import _cloud_file, _images, _keyed_stub, _model, _task_file

    monkeypatch.setattr(loupe.core.secrets, "_default_keyring", lambda: None)
    monkeypatch.delenv("LOUPE_CLOUD_CONFIG", raising=False)
    _keyed_stub(stub, monkeypatch, '{"n": 7}')
    folder, db = _images(tmp_path, 3), tmp_path / "loupe.db"
    task = _task_file(tmp_path, cloud=True, budget={"max_calls_per_job": 2})
    code, out, err = run_cli(
        "batch",
        str(folder),
        "--task-file",
        str(task),
        *_model(tiny_models),
        "--escalate",
        "--cloud-config",
        str(_cloud_file(tmp_path, stub)),
        "--db",
        str(db),
        "--ray",
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["done"] == 3 and summary["sent"] == 3 and len(stub.received) == 2
    with Store(db) as store:
        results = store.results(summary["job"])
        ladders = sorted([s.get("runner", s["step"]) for s in r.escalation] for r in results)
        assert ladders == [["local", "cloud"], ["local", "cloud"], ["local", "cloud", "review"]]
        assert sorted(str(r.result.data) for r in results).count("{'n': 7}") == 2
        assert len(spend_history(store, since=0)) == 2  # every cloud call audited, by the driver


def test_a_model_no_node_has_is_one_line_and_the_items_stay_pending(
    tmp_path: Path, digit: Path, model: list[str], tiny_models: dict[str, SyntheticModel]
):
    from dataclasses import replace

    from loupe.cluster.session import ClusterError

    folder = make_images(tmp_path / "imgs", 2, seed=21)
    db = tmp_path / "s.db"
    store, job_id = new_job(db, [str(folder), "--task-file", str(digit), *model])
    m = tiny_models["smolvlm"]
    ref = model_ref(m.text_path.stem, [m.text_path, m.mmproj_path], catalog=False)
    wrong = replace(ref, files=(replace(ref.files[0], sha256="0" * 64), ref.files[1]))  # not the bytes anyone has
    with store, pytest.raises(ClusterError) as info:
        run_cluster_job(store, job_id, wrong, ClusterOptions(actors=1, threads=1))
    message = str(info.value)
    assert "\n" not in message and "sha256 differs" in message and m.text_path.name in message, message
    with Store(db) as again:
        assert again.counts(job_id)["done"] == 0 and again.job(job_id).state == "interrupted"
