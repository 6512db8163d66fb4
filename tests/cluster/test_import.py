"""`loupe import DIR` on an --out folder made of real results (the tiny model through llama.cpp): every item stored
once, equal to a local `loupe batch` on the same images, resumable, and a second import adds nothing."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.api.models import ModelSpec, open_backend
from loupe.cli import main
from loupe.cluster.rows import JOB_FILE, ItemAnswer, rows_to_columns, to_row
from loupe.core.prefetch import file_identity
from loupe.models.synthetic import SyntheticModel
from loupe.store import ReviewQueue, Store
from loupe.store.index import phash_file, to_signed
from loupe.store.records import task_to_dict

from tests.noise import write_noise_pngs
from tests.store.conftest import DIGIT_TASK

TASK = DIGIT_TASK  # the tiny model's task, as tests/store runs it
N = 5


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@dataclass(frozen=True)
class Made:
    """A local batch's store (the reference), the job it ran, and the rows a cluster run would have written."""

    folder: Path
    task_file: Path
    model: list[str]
    local_db: Path
    job: dict[str, Any]  # JOB_FILE's content
    rows: list[dict[str, Any]]  # in item order
    answers: list[ItemAnswer]


@pytest.fixture(scope="module")
def made(tiny_models: dict[str, SyntheticModel], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    """A local `loupe batch` on five images (the reference), and the same images through an Engine as rows."""
    base = tmp_path_factory.mktemp("import")
    m = tiny_models["smolvlm"]
    with pytest.MonkeyPatch.context() as mp:  # the autouse fixtures are per test; this one runs the model once
        mp.setenv("LOUPE_PREFIX_CACHE", str(base / "prefix-kv"))
        mp.setenv("LOUPE_PROJECTOR_CACHE", str(base / "projectors"))
        mp.setenv("LOUPE_OFFLINE", "1")
        mp.setenv("LOUPE_DB", str(base / "default.db"))
        folder = base / "in"
        write_noise_pngs(folder, N, seed=4, size=(24, 16), name="{i:03d}.png")
        task_file = base / "digit.json"
        task_file.write_text(json.dumps(TASK))
        model = ["--model-path", str(m.text_path), "--mmproj", str(m.mmproj_path), "--threads", "1"]
        local_db = base / "local.db"
        code, _, err = run("batch", str(folder), "--task-file", str(task_file), *model, "--db", str(local_db), "--json")
        assert code == 0, err
        with Store(local_db) as store:
            job = store.latest_job()
            items = store.items(job.id)
        opened = open_backend(ModelSpec(path=str(m.text_path), mmproj=str(m.mmproj_path), threads=1))
        engine = Engine(opened.backend, model=opened.name)
        answers = []
        try:
            for item in items:  # what each Ray worker does for its item
                result = engine.analyze(AnalyzeRequest((item.path,), job.task))
                ident = file_identity(item.path)
                assert ident is not None
                phashes = {info.id: phash_file(info.path) for info in result.images}
                answers.append(ItemAnswer(item.id, item.path, ident[0], ident[1], result, (), phashes))
        finally:
            engine.close()
        spec = {
            "key": job.key,
            "task": task_to_dict(job.task),
            "model": job.model,
            "settings": job.settings,
            "launch": job.launch,
            "inputs": job.launch["inputs"],
            "paths": [i.path for i in items],
        }
        yield Made(folder, task_file, model, local_db, spec, [to_row(a) for a in answers], answers)


def write_out(folder: Path, job: dict[str, Any], files: list[list[dict[str, Any]]]) -> Path:
    """An --out folder: JOB_FILE and one Parquet file per list of rows (a row group per row: many batches)."""
    folder.mkdir(parents=True)
    (folder / JOB_FILE).write_text(json.dumps(job))
    for n, rows in enumerate(files):
        pq.write_table(pa.table(rows_to_columns(rows)), folder / f"part-{n:05d}.parquet", row_group_size=1)
    return folder


def stored(db: Path) -> dict[str, dict[str, Any]]:
    """Each item's stored result and what is kept beside it, by path."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = conn.execute(
        "SELECT i.path, i.sha256 AS item_sha, i.size, i.state, r.* FROM items i JOIN results r ON r.item_id = i.id"
    ).fetchall()
    got: dict[str, dict[str, Any]] = {}
    for r in rows:
        assert r["path"] not in got  # one result per item
        hashes = conn.execute("SELECT image_id, phash FROM image_hashes WHERE result_id = ?", (r["id"],)).fetchall()
        vectors = conn.execute("SELECT image_id, vector FROM image_vectors WHERE result_id = ?", (r["id"],)).fetchall()
        columns = {k: r[k] for k in r.keys() if k not in ("id", "item_id", "created", "timings")}  # noqa: SIM118
        got[r["path"]] = {
            **columns,
            "phashes": sorted(tuple(h) for h in hashes),
            "vectors": sorted(tuple(v) for v in vectors),
        }
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    return got


def test_every_item_once_equal_to_a_local_batch_and_a_second_import_adds_nothing(made: Made, tmp_path: Path) -> None:
    rows = made.rows
    # a duplicate inside one file and a retried write of another row in a file of its own
    out = write_out(tmp_path / "run1", made.job, [[rows[0], rows[1], rows[1]], rows[2:4], [rows[4]], [rows[0]]])
    db = tmp_path / "cluster.db"
    code, text, err = run("import", str(out), "--db", str(db), "--json")
    assert code == 0 and "Traceback" not in err, err
    with Store(made.local_db) as local:
        review = sorted(s.path for s in ReviewQueue(local).pending(1))
    summary = json.loads(text)
    assert summary == {
        "job": 1,
        "items": N,
        "done": N,
        "imported": N,
        "skipped": 2,
        "unknown": 0,
        "errors": 0,
        "review": len(review),
    }

    mine, theirs = stored(db), stored(made.local_db)
    assert sorted(mine) == sorted(theirs) == sorted(made.job["paths"])
    for path, got in mine.items():
        want = theirs[path]
        for column in ("status", "data", "raw", "confidence", "min_confidence", "model_confidence", "tokens", "boxes"):
            assert got[column] == want[column], (path, column)
        # the same cache key, image identity and search index as the local batch stored
        for column in ("cache_key", "item_sha", "size", "state", "images", "model", "backend", "phashes", "vectors"):
            assert got[column] == want[column], (path, column)
    for answer in made.answers:  # and exactly the answer the worker sent
        (info,) = answer.result.images
        assert mine[answer.path]["phashes"] == [(info.id, to_signed(phash_file(info.path) or 0))]
        assert mine[answer.path]["vectors"] == [(e.image_id, e.vector) for e in answer.result.embeddings]
        assert len(mine[answer.path]["vectors"]) == 1

    with Store(db) as store:
        job = store.job(1)
        assert (job.key, job.state, job.launch, job.settings) == (made.job["key"], "done", *_launch_settings(made))
        assert sorted(s.path for s in ReviewQueue(store).pending(1)) == review
        before = [(s.id, s.created) for s in store.results(1)]

    exported = tmp_path / "results.jsonl"
    code, _, err = run("export", "--db", str(db), "--out", str(exported))
    assert code == 0, err
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert len(lines) == N and {line["path"] for line in lines} == set(made.job["paths"])

    code, text, _ = run("import", str(out), "--db", str(db), "--json")  # again: nothing new
    assert code == 0 and json.loads(text) | {"review": 0} == {**summary, "imported": 0, "skipped": N + 2, "review": 0}
    with Store(db) as store:
        assert [(s.id, s.created) for s in store.results(1)] == before and len(store.jobs()) == 1

    code, text, _ = run("batch", "--resume", "1", "--db", str(db), "--json")  # `loupe batch` sees a finished job
    assert code == 0 and json.loads(text)["done"] == N
    # the same command as the local batch: a new job, every image answered from the store by the imported cache keys
    code, text, _ = run("batch", str(made.folder), "--task-file", str(made.task_file), *made.model, "--db", str(db))
    assert code == 0 and text.startswith(f"job 2: {N} images, {N} done ({N} from the store), 0 errors"), text


def _launch_settings(made: Made) -> tuple[dict[str, Any], dict[str, Any]]:
    return made.job["launch"], made.job["settings"]


def test_a_partial_run_imports_what_it_has_and_loupe_batch_resume_finishes_it(made: Made, tmp_path: Path) -> None:
    stray = {**made.rows[0], "path": str(tmp_path / "not-in-the-job.png")}
    out = write_out(tmp_path / "run1", made.job, [[*made.rows[:3], stray]])
    db = tmp_path / "cluster.db"
    code, text, err = run("import", str(out), "--db", str(db))
    assert code == 0, err
    assert text.startswith(f"job 1: {N} images, 3 done; 3 imported, 0 skipped (stored already), 1 rows not in the job")
    assert "loupe batch --resume 1" in err
    with Store(db) as store:
        assert store.job(1).state == "interrupted"
        imported = {s.path: s.id for s in store.results(1)}

    code, text, err = run("batch", "--resume", "1", "--db", str(db), "--json")  # the rest, here, on the same job
    assert code == 0, err
    assert json.loads(text) | {"review": 0} == {"job": 1, "items": N, "done": N, "cached": 0, "errors": 0, "review": 0}
    mine, theirs = stored(db), stored(made.local_db)
    assert {p: r["data"] for p, r in mine.items()} == {p: r["data"] for p, r in theirs.items()}
    with Store(db) as store:
        assert {s.path: s.id for s in store.results(1) if s.path in imported} == imported  # kept, not redone

    code, text, _ = run("import", str(out), "--db", str(db), "--json")  # after the local finish: still once each
    assert code == 0 and json.loads(text)["imported"] == 0 and json.loads(text)["skipped"] == 3


def _bad_job(made: Made, tmp_path: Path, change: dict[str, Any]) -> Path:
    return write_out(tmp_path / "bad", {**made.job, **change}, [made.rows[:1]])


BAD: dict[str, tuple[Any, str]] = {
    "no folder": (lambda made, tmp: tmp / "nowhere", "no such folder"),
    "a file": (lambda made, tmp: made.task_file, "not a folder"),
    "no job file": (lambda made, tmp: (tmp / "empty").mkdir() or tmp / "empty", f"no {JOB_FILE} in it"),
    "garbled": (
        lambda made, tmp: _raw(tmp, '{"key": "abc", "task"'),
        "not valid JSON (Expecting ':' delimiter at line 1 column 22)",
    ),
    "array": (lambda made, tmp: _raw(tmp, "[1, 2]"), "must hold a JSON object with key, task"),
    "missing key": (
        lambda made, tmp: _raw(tmp, json.dumps({k: v for k, v in made.job.items() if k != "model"})),
        "missing 'model'",
    ),
    "task": (
        lambda made, tmp: _bad_job(made, tmp, {"task": {**made.job["task"], "schema": {"type": "nope"}}}),
        "the task does not parse: ",
    ),
    "key": (lambda made, tmp: _bad_job(made, tmp, {"key": "0" * 64}), "its key does not match"),
    "not parquet": (lambda made, tmp: _with(tmp, made, "part-x.parquet", b"hello, not parquet"), "not a Parquet file"),
    "columns": (lambda made, tmp: _with_table(tmp, made, pa.table({"path": ["a"]})), "no column item_id, sha256"),
    "bad row": (
        lambda made, tmp: _with_table(tmp, made, pa.table(rows_to_columns([{**made.rows[0], "status": "great"}]))),
        "is not a Loupe result ('great' is not a valid Status)",
    ),
}


def _raw(tmp: Path, text: str) -> Path:
    folder = tmp / "raw"
    folder.mkdir()
    (folder / JOB_FILE).write_text(text)
    return folder


def _with(tmp: Path, made: Made, name: str, data: bytes) -> Path:
    folder = write_out(tmp / "bad", made.job, [])
    (folder / name).write_bytes(data)
    return folder


def _with_table(tmp: Path, made: Made, table: pa.Table) -> Path:
    folder = write_out(tmp / "bad", made.job, [])
    pq.write_table(table, folder / "part-x.parquet")
    return folder


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_stores_nothing(case: str, made: Made, tmp_path: Path) -> None:
    make, expected = BAD[case]
    folder = make(made, tmp_path)
    db = tmp_path / "cluster.db"
    code, _, err = run("import", str(folder), "--db", str(db))
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("error: ") and expected in err, err
    if case != "bad row":  # found before the store is opened
        assert not db.exists()
    else:  # the job is recorded, the row is not
        with Store(db) as store:
            assert store.results() == [] and store.integrity() == "ok"


def test_import_runs_without_ray() -> None:
    """`loupe import` needs pyarrow only: neither the importer nor its CLI verb imports Ray."""
    code = (
        "import sys; import loupe.cluster.importer, loupe.cli.importer, loupe.cli.main; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_rows_phashes_are_stored_not_recomputed(made: Made, tmp_path: Path) -> None:
    """The importing machine may not see the images: the pHash the worker computed is the one stored."""
    ids = [a.result.images[0].id for a in made.answers]
    rows = [{**r, "phashes": json.dumps({ids[i]: 12345 + i})} for i, r in enumerate(made.rows)]
    db = tmp_path / "cluster.db"
    code, _, err = run("import", str(write_out(tmp_path / "run1", made.job, [rows])), "--db", str(db))
    assert code == 0, err
    got = stored(db)
    assert [got[r["path"]]["phashes"] for r in made.rows] == [[(ids[i], 12345 + i)] for i in range(N)]


def test_rows_written_by_ray_data_import_the_same(made: Made, tmp_path: Path, ray_local: None) -> None:
    """The files Ray Data's write_parquet makes (its own names, schemas and row groups; a row written twice) import
    like pyarrow's: what `--out` workers write is what `loupe import` reads."""
    import ray

    out = tmp_path / "run1"
    ds = ray.data.from_items([*made.rows, made.rows[2]]).repartition(3)
    ds.write_parquet(str(out))
    (out / JOB_FILE).write_text(json.dumps(made.job))
    assert len(list(out.glob("*.parquet"))) >= 2
    db = tmp_path / "cluster.db"
    code, text, err = run("import", str(out), "--db", str(db), "--json")
    assert code == 0, err
    assert json.loads(text)["imported"] == N and json.loads(text)["skipped"] == 1
    mine, theirs = stored(db), stored(made.local_db)
    for path, got in mine.items():
        for column in ("status", "data", "confidence", "cache_key", "phashes", "vectors"):
            assert got[column] == theirs[path][column], (path, column)
