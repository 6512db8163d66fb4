"""The SQLite store itself: durability settings, round trips, migrations of older files, refusals."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from loupe.core.tasks import builtin_task
from loupe.core.types import Box, ImageInfo, Result, Status, Timings, Tokens
from loupe.store import SCHEMA_VERSION, ReviewQueue, Store, StoreError, default_db_path
from loupe.store.migrations import migrate
from loupe.store.sqlite import DuplicateResultError

from tests.store.make_fixture import FIXTURE, V1_RESULT

RESULT = Result(
    status=Status.OK,
    task="defects",
    model="m",
    backend="fake",
    images=(ImageInfo("img_01", "/x/a.jpg", "cd" * 32, 640, 480, 512, 384, ("downscaled 640x480 -> 512x384",)),),
    data={"defects": [{"label": "dent", "box_2d": [10, 20, 30, 40], "severity": 3, "reason": "r"}]},
    raw="{...}",
    confidence={"/defects/0/label": 0.25, "/defects/0/box_2d/0": 0.5},
    boxes=(Box("/defects/0/box_2d", "dent", (10.0, 20.0, 30.0, 40.0), (13, 5, 26, 14), "img_01", 0.5),),
    timings=Timings(encode_ms=1.5, total_ms=9.25),
    tokens=Tokens(3, 4, 5),
    attempts=2,
    error=None,
)


def _job(store: Store, paths: list[str]) -> int:
    task = builtin_task("defects")
    return store.create_job(key="k", task=task, model="m", settings={"backend": "fake"}, launch={}, paths=paths).id


def test_store_is_durable_and_a_result_round_trips_exactly(tmp_path):
    with Store(tmp_path / "s.db") as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.version == SCHEMA_VERSION and store.migrated_from == 0
        job = _job(store, ["/x/a.jpg", "/x/b.jpg"])
        (item, other) = store.items(job)
        rid = store.save_result(item.id, RESULT, sha256="cd" * 32, size=10, cache_key="key")
        assert [i.path for i in store.items(job, pending_only=True)] == [other.path]
    with Store(tmp_path / "s.db") as again:  # a fresh connection reads what was committed
        stored = again.result(rid)
        assert stored.result == RESULT and stored.path == "/x/a.jpg" and stored.sha256 == "cd" * 32
        assert again.counts(job) == {"items": 2, "done": 1, "cached": 0, "errors": 0}
        assert again.cached_result_id("key") == rid and again.cached_result_id("other") is None
        assert again.integrity() == "ok"


def test_a_second_result_for_an_item_is_refused_and_leaves_the_first(tmp_path):
    with Store(tmp_path / "s.db") as store:
        job = _job(store, ["/x/a.jpg"])
        (item,) = store.items(job)
        first = store.save_result(item.id, RESULT, sha256=None, size=None, cache_key=None)
        with pytest.raises(DuplicateResultError, match="already has a result"):
            store.save_result(item.id, RESULT, sha256=None, size=None, cache_key=None)
        assert [s.id for s in store.results(job)] == [first] and not store.conn.in_transaction


def test_bulk_writes_commit_together_and_a_refused_one_leaves_the_rest(tmp_path):
    """`loupe import`'s batches: one commit for many results; a duplicate inside is refused alone; an exception
    that leaves the batch takes back all of it, and another connection sees nothing until the commit."""
    db = tmp_path / "s.db"
    with Store(db) as store:
        job = _job(store, ["/x/a.jpg", "/x/b.jpg", "/x/c.jpg"])
        a, b, c = store.items(job)
        assert {p: i.id for p, i in store.items_by_path(job, ["/x/c.jpg", "/x/a.jpg", "/x/z.jpg"]).items()} == {
            "/x/a.jpg": a.id,
            "/x/c.jpg": c.id,
        }
        assert store.latest_job_with_key("k") == store.job(job) and store.latest_job_with_key("nope") is None
        with store.bulk():
            store.save_result(a.id, RESULT, sha256="cd" * 32, size=10, cache_key="key")
            with pytest.raises(DuplicateResultError):
                store.save_result(a.id, RESULT, sha256="cd" * 32, size=10, cache_key="key")
            store.save_result(b.id, RESULT, sha256="cd" * 32, size=10, cache_key="key")
            with sqlite3.connect(db) as other:  # not committed yet
                assert other.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0
            with pytest.raises(StoreError, match="do not nest"), store.bulk():
                pass
        assert store.counts(job)["done"] == 2
        with pytest.raises(RuntimeError), store.bulk():
            store.save_result(c.id, RESULT, sha256="cd" * 32, size=10, cache_key="key")
            raise RuntimeError("the import stopped")
        assert store.counts(job)["done"] == 2 and [i.path for i in store.items(job, pending_only=True)] == ["/x/c.jpg"]
        assert store.integrity() == "ok"


def test_errors_are_never_answered_from_the_cache(tmp_path):
    with Store(tmp_path / "s.db") as store:
        job = _job(store, ["/x/a.jpg"])
        (item,) = store.items(job)
        store.save_result(
            item.id, Result(Status.ERROR, "defects", "m", "fake", error="boom"), sha256="s", size=1, cache_key="key"
        )
        assert store.cached_result_id("key") is None


def test_v1_store_is_migrated_on_open_keeping_its_rows(tmp_path):
    db = tmp_path / "old.db"
    shutil.copyfile(FIXTURE, db)
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 1
    with Store(db) as store:
        assert store.migrated_from == 1 and store.version == SCHEMA_VERSION == 5
        job = store.job(1)
        assert job.task.name == "describe" and job.state == "interrupted" and job.launch["inputs"] == ["/photos"]
        assert [(i.path, i.state) for i in store.items(1)] == [
            ("/photos/panel.jpg", "done"),
            ("/photos/other.jpg", "pending"),
        ]
        (stored,) = store.results(1)
        assert stored.result == V1_RESULT and stored.escalation == ()  # the v2 column, defaulted
        assert stored.review is not None and stored.review.who == "ana" and stored.final_data["tags"] == ["metal"]
        assert ReviewQueue(store).labelled(1) == [stored]
        assert store.record_audit("upload", destination="api.example", detail={"bytes": 10}, job_id=1) == 1
        assert store.integrity() == "ok"
    with Store(db) as reopened:  # idempotent: nothing left to migrate
        assert reopened.migrated_from == SCHEMA_VERSION


def test_migration_is_one_transaction_per_version(tmp_path):
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn, target=1) == 0
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"jobs", "items", "results", "reviews"}  # the audit table arrives with version 2
    assert migrate(conn) == 1
    assert "audit" in {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_files_that_are_not_our_store_are_refused_in_one_line(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(StoreError, match="not a usable Loupe store"):
        Store(junk)
    newer = tmp_path / "newer.db"
    sqlite3.connect(newer).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this Loupe"):
        Store(newer)
    with Store(tmp_path / "ok.db") as store, pytest.raises(StoreError, match="no job 7"):
        store.job(7)


def test_default_location_honours_loupe_db(monkeypatch, tmp_path):
    monkeypatch.setenv("LOUPE_DB", str(tmp_path / "elsewhere.db"))
    assert default_db_path() == tmp_path / "elsewhere.db"
    monkeypatch.delenv("LOUPE_DB")
    assert default_db_path().name == "loupe.db" and "loupe" in default_db_path().parent.as_posix()


def test_reviews_refuse_unknown_decisions_and_results(tmp_path):
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(StoreError, match="no result 3"):
            store.add_review(3, "accept", who="me")
        job = _job(store, [str(Path("/x/a.jpg"))])
        (item,) = store.items(job)
        rid = store.save_result(item.id, RESULT, sha256=None, size=None, cache_key=None)
        with pytest.raises(StoreError, match="unknown review decision"):
            store.add_review(rid, "maybe", who="me")


def test_threads_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """SQLite's switch to WAL skips the busy handler; a watcher and its outputs thread opening one new file at
    the same moment used to get "database is locked" (seen in CI)."""
    import threading

    failures: list[str] = []
    for n in range(20):
        start = threading.Barrier(3)

        def open_it(path: Path = tmp_path / f"s{n}.db", start: threading.Barrier = start) -> None:
            start.wait()
            try:
                Store(path).close()
            except StoreError as exc:
                failures.append(str(exc))

        threads = [threading.Thread(target=open_it) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
