"""The results store: one SQLite file (WAL, synchronous=FULL) where every finished result is committed at once."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from loupe.core.errors import LoupeError
from loupe.core.tasks import Task
from loupe.core.types import ImageEmbedding, Result
from loupe.models.paths import user_data_file
from loupe.store.index import phash_file, text_of, to_signed
from loupe.store.migrations import SCHEMA_VERSION, NewerStoreError, migrate, version
from loupe.store.records import (
    DECISIONS,
    JOB_STATES,
    RESULT_COLUMNS,
    ItemRecord,
    JobRecord,
    ReviewRecord,
    StoredResult,
    dumps,
    now,
    result_columns,
    result_from_row,
    task_from_dict,
    task_key,
    task_to_dict,
)

ENV_DB = "LOUPE_DB"


class StoreError(LoupeError):
    """The store cannot be opened or used as asked (not a Loupe store, unknown job or result, bad review)."""


class DuplicateResultError(StoreError):
    """An item that already has its result was given another one; the first is kept."""


def default_db_path() -> Path:
    """$LOUPE_DB, else loupe.db in the per-user data directory (e.g. ~/.local/share/loupe/loupe.db)."""
    return user_data_file(ENV_DB, "loupe.db")


WAL_WAIT_S = 30.0


def _enable_wal(conn: sqlite3.Connection, wait_s: float = WAL_WAIT_S) -> str:
    """Switch to WAL, waiting while another connection holds the lock (this pragma skips the busy handler).

    Two threads or processes opening a new store at once (e.g. `loupe watch` and its outputs thread) would
    otherwise see "database is locked" from one of them.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _why(exc: sqlite3.OperationalError) -> str:
    """What a write failure means for the user."""
    text = str(exc).lower()
    if "full" in text:
        return "the disk (or the store's size limit) is full: free some space, then resume"
    if "readonly" in text or "read-only" in text:
        return "the store is read-only here: check its permissions, or pass --db elsewhere"
    if "locked" in text or "busy" in text:
        return "the store is locked by another program for too long"
    return f"cannot write the store ({exc})"


class Store:
    """One open store file. Use one Store per thread; every write is its own committed transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the store ({exc})") from None
        self.conn.row_factory = sqlite3.Row
        self._bulk = False  # inside bulk(): writes are savepoints of one transaction
        try:
            self.conn.execute("PRAGMA busy_timeout = 30000")
            mode = _enable_wal(self.conn)
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: the file system does not allow SQLite's WAL mode (got {mode})")
            self.conn.execute("PRAGMA synchronous = FULL")  # a power cut loses no committed result
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.migrated_from = migrate(self.conn)
        except (sqlite3.DatabaseError, NewerStoreError) as exc:
            self.conn.close()
            raise StoreError(f"{self.path}: not a usable Loupe store ({exc})") from None

    @property
    def version(self) -> int:
        """The schema version of the open file (always SCHEMA_VERSION once opened)."""
        return version(self.conn)

    def close(self) -> None:
        """Close the file (committed results are already on disk)."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Many writes, one commit (one fsync): `loupe import` stores a batch of rows at a time. Each write inside
        still succeeds or fails alone (a savepoint); a crash loses the whole uncommitted batch, never part of one."""
        if self._bulk:
            raise StoreError("bulk writes do not nest")
        with self._tx():
            self._bulk = True
            try:
                yield
            finally:
                self._bulk = False

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed (and fsynced) on success, rolled back on any exception."""
        if self._bulk:  # inside bulk(): a savepoint, committed with the batch
            self.conn.execute("SAVEPOINT one_write")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK TO one_write")
                self.conn.execute("RELEASE one_write")
                raise
            self.conn.execute("RELEASE one_write")
            return
        if self.conn.in_transaction:  # left open by an interrupt between BEGIN and the try below
            self.conn.execute("ROLLBACK")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # the file system's problem, said in one line with the path
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise StoreError(f"{self.path}: {_why(exc)}; nothing was lost, what was committed is there") from None

    def integrity(self) -> str:
        """SQLite's integrity check ("ok" when the file is sound)."""
        return "; ".join(str(r[0]) for r in self.conn.execute("PRAGMA integrity_check"))

    # -- jobs --------------------------------------------------------------------------------------
    def create_job(
        self,
        *,
        key: str,
        task: Task,
        model: str,
        settings: dict[str, Any],
        launch: dict[str, Any],
        paths: Sequence[str],
    ) -> JobRecord:
        """Record a job and all its items in one transaction, before any work starts."""
        stamp = now()
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO jobs (key, task_name, task_key, task, model, settings, launch, created, updated, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')",
                (
                    key,
                    task.name,
                    task_key(task),
                    dumps(task_to_dict(task)),
                    model,
                    dumps(settings),
                    dumps(launch),
                    stamp,
                    stamp,
                ),
            )
            job_id = int(cur.lastrowid or 0)
            self._insert_items(c, job_id, paths)
        return self.job(job_id)

    def add_items(self, job_id: int, paths: Sequence[str]) -> int:
        """Add paths the job does not have yet (a folder that gained files); returns how many were new."""
        with self._tx() as c:
            return self._insert_items(c, job_id, paths)

    @staticmethod
    def _insert_items(c: sqlite3.Connection, job_id: int, paths: Sequence[str]) -> int:
        start = c.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM items WHERE job_id = ?", (job_id,)).fetchone()[0]
        before = c.total_changes
        c.executemany(
            "INSERT OR IGNORE INTO items (job_id, seq, path) VALUES (?, ?, ?)",
            [(job_id, start + i, p) for i, p in enumerate(paths)],
        )
        return c.total_changes - before

    def job(self, job_id: int) -> JobRecord:
        """A job by id."""
        row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise StoreError(f"no job {job_id} in {self.path}")
        return _job(row)

    def jobs(self) -> list[JobRecord]:
        """Every job, oldest first."""
        return [_job(r) for r in self.conn.execute("SELECT * FROM jobs ORDER BY id")]

    def latest_job(self) -> JobRecord:
        """The most recently created job."""
        row = self.conn.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            raise StoreError(f"no jobs in {self.path} yet; run `loupe batch` first")
        return _job(row)

    def unfinished_job(self, key: str) -> JobRecord | None:
        """The latest job launched the same way that has not finished, if any."""
        row = self.conn.execute(
            "SELECT * FROM jobs WHERE key = ? AND state != 'done' ORDER BY id DESC LIMIT 1", (key,)
        ).fetchone()
        return None if row is None else _job(row)

    def latest_job_with_key(self, key: str) -> JobRecord | None:
        """The latest job launched the same way, finished or not (`loupe import` adds to it, never a second one)."""
        row = self.conn.execute("SELECT * FROM jobs WHERE key = ? ORDER BY id DESC LIMIT 1", (key,)).fetchone()
        return None if row is None else _job(row)

    def set_state(self, job_id: int, state: str) -> None:
        """Mark a job running, interrupted or done."""
        if state not in JOB_STATES:
            raise StoreError(f"unknown job state {state!r}")
        with self._tx() as c:
            c.execute("UPDATE jobs SET state = ?, updated = ? WHERE id = ?", (state, now(), job_id))

    # -- items and results -------------------------------------------------------------------------
    def items(self, job_id: int, *, pending_only: bool = False) -> list[ItemRecord]:
        """A job's items in order (only those without a result when pending_only)."""
        where = " AND state = 'pending'" if pending_only else ""
        rows = self.conn.execute(f"SELECT * FROM items WHERE job_id = ?{where} ORDER BY seq", (job_id,))
        return [ItemRecord(r["id"], r["job_id"], r["seq"], r["path"], r["sha256"], r["size"], r["state"]) for r in rows]

    def items_by_path(self, job_id: int, paths: Sequence[str]) -> dict[str, ItemRecord]:
        """The job's items among `paths`, by path (a batch at a time, so a huge job is never loaded whole)."""
        found: dict[str, ItemRecord] = {}
        unique = list(dict.fromkeys(paths))
        for start in range(0, len(unique), 500):  # under SQLite's limit on bound parameters
            chunk = unique[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self.conn.execute(f"SELECT * FROM items WHERE job_id = ? AND path IN ({marks})", (job_id, *chunk))
            for r in rows:
                found[r["path"]] = ItemRecord(
                    r["id"], r["job_id"], r["seq"], r["path"], r["sha256"], r["size"], r["state"]
                )
        return found

    def cached_result_id(self, key: str) -> int | None:
        """The first stored result with this cache key (errors are never cached)."""
        row = self.conn.execute(
            "SELECT id FROM results WHERE cache_key = ? AND status != 'error' ORDER BY id LIMIT 1", (key,)
        ).fetchone()
        return None if row is None else int(row[0])

    def save_result(
        self,
        item_id: int,
        result: Result,
        *,
        sha256: str | None,
        size: int | None,
        cache_key: str | None,
        cached_from: int | None = None,
        escalation: Sequence[Any] = (),
        phashes: Mapping[str, int | None] | None = None,
    ) -> int:
        """Commit one finished result and mark its item done, atomically; returns the result id. In the same
        transaction: its images' embeddings (`result.embeddings`), their perceptual hashes (`phashes` by image id
        when the caller has them, else from the image files, read before the transaction) and its text for search."""
        cols = ", ".join(RESULT_COLUMNS)
        marks = ", ".join("?" for _ in RESULT_COLUMNS)
        hashes = self._image_hashes(result, phashes or {})
        try:
            with self._tx() as c:
                cur = c.execute(
                    f"INSERT INTO results (item_id, cache_key, cached_from, escalation, created, {cols})"
                    f" VALUES (?, ?, ?, ?, ?, {marks})",
                    (item_id, cache_key, cached_from, dumps(list(escalation)), now(), *result_columns(result)),
                )
                rid = int(cur.lastrowid or 0)
                c.execute("UPDATE items SET state = 'done', sha256 = ?, size = ? WHERE id = ?", (sha256, size, item_id))
                c.executemany(
                    "INSERT OR REPLACE INTO image_vectors (result_id, image_id, model, detail, dim, vector)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(rid, e.image_id, e.model, e.detail, e.dim, e.vector) for e in result.embeddings],
                )
                self._write_index(c, rid, hashes, text_of(result.data))
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise
            raise DuplicateResultError(
                f"item {item_id} already has a result (is another `loupe batch` running "
                "this job?); the stored one is kept"
            ) from None
        return rid

    # -- what search reads beside each result (loupe.search) ------------------------------------------
    def _image_hashes(self, result: Result, given: Mapping[str, int | None]) -> list[tuple[str, str, int | None]]:
        """(image id, sha256, signed pHash or None) per image of a result: given, known by its bytes, or read."""
        rows: list[tuple[str, str, int | None]] = []
        for info in result.images:
            if info.id in given:
                value = given[info.id]
            else:
                known = self.conn.execute(
                    "SELECT phash FROM image_hashes WHERE sha256 = ? AND phash IS NOT NULL LIMIT 1", (info.sha256,)
                ).fetchone()
                if known is not None:
                    rows.append((info.id, info.sha256, int(known[0])))
                    continue
                # an image intake refused (no size: unreadable, hostile) is not opened again here
                value = phash_file(info.path) if info.width and info.height else None
            rows.append((info.id, info.sha256, None if value is None else to_signed(value)))
        return rows

    @staticmethod
    def _write_index(c: sqlite3.Connection, rid: int, hashes: Sequence[tuple[str, str, int | None]], text: str) -> None:
        c.executemany(
            "INSERT OR REPLACE INTO image_hashes (result_id, image_id, sha256, phash) VALUES (?, ?, ?, ?)",
            [(rid, image_id, sha, value) for image_id, sha, value in hashes],
        )
        c.execute("DELETE FROM result_text WHERE rowid = ?", (rid,))
        c.execute("INSERT INTO result_text (rowid, body) VALUES (?, ?)", (rid, text))

    def embeddings(self, result_id: int) -> tuple[ImageEmbedding, ...]:
        """The stored embeddings of a result's images (none when its backend gave none)."""
        rows = self.conn.execute(
            "SELECT image_id, model, detail, vector FROM image_vectors WHERE result_id = ? ORDER BY image_id",
            (result_id,),
        )
        return tuple(ImageEmbedding(r["image_id"], r["model"], r["detail"], bytes(r["vector"])) for r in rows)

    def unindexed(self) -> list[int]:
        """Results stored before search existed (no perceptual hash or no text row yet), oldest first."""
        rows = self.conn.execute(
            "SELECT r.id FROM results r WHERE r.images != '[]' AND NOT EXISTS"
            " (SELECT 1 FROM image_hashes h WHERE h.result_id = r.id)"
            " UNION SELECT r.id FROM results r WHERE NOT EXISTS (SELECT 1 FROM result_text t WHERE t.rowid = r.id)"
            " ORDER BY 1"
        )
        return [int(r[0]) for r in rows]

    def without_vectors(self) -> list[int]:
        """Results with images but no stored image vector (analyzed before vectors were kept), oldest first."""
        rows = self.conn.execute(
            "SELECT r.id FROM results r WHERE r.images != '[]' AND NOT EXISTS"
            " (SELECT 1 FROM image_vectors v WHERE v.result_id = r.id) ORDER BY r.id"
        )
        return [int(r[0]) for r in rows]

    def add_embeddings(self, result_id: int, embeddings: Sequence[ImageEmbedding]) -> None:
        """Store image vectors for a stored result (`loupe index --vectors`), in one transaction."""
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO image_vectors (result_id, image_id, model, detail, dim, vector)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(result_id, e.image_id, e.model, e.detail, e.dim, e.vector) for e in embeddings],
            )

    def index_result(self, result_id: int) -> int:
        """Back-fill one stored result's perceptual hashes and text (`loupe index`); returns how many of its
        images could not be read (moved or deleted files: their hash stays empty)."""
        stored = self.result(result_id)
        hashes = self._image_hashes(stored.result, {})
        with self._tx() as c:
            self._write_index(c, result_id, hashes, text_of(stored.final_data))
        return sum(1 for _, _, value in hashes if value is None)

    def copy_result(
        self, item_id: int, source_id: int, *, path: str, sha256: str, size: int, cache_key: str
    ) -> tuple[int, Result]:
        """Answer an item from a stored result (a cache hit): same answer, this item's path; (id, result)."""
        source = self.result(source_id)
        images = tuple(replace(info, path=path) if i == 0 else info for i, info in enumerate(source.result.images))
        result = replace(source.result, images=images, embeddings=self.embeddings(source_id))
        rid = self.save_result(
            item_id,
            result,
            sha256=sha256,
            size=size,
            cache_key=cache_key,
            cached_from=source_id,
            escalation=source.escalation,
        )
        return rid, result

    _RESULTS_SQL = (
        "SELECT r.*, i.job_id, i.path, i.sha256 AS item_sha256, j.task_name FROM results r"
        " JOIN items i ON i.id = r.item_id JOIN jobs j ON j.id = i.job_id"
    )

    def results(self, job_id: int | None = None) -> list[StoredResult]:
        """A job's results in item order (every job's when None), each with its latest review."""
        where, args = (" WHERE i.job_id = ?", (job_id,)) if job_id is not None else ("", ())
        rows = self.conn.execute(f"{self._RESULTS_SQL}{where} ORDER BY i.job_id, i.seq", args).fetchall()
        reviews = self._latest_reviews(job_id)
        return [_stored(r, reviews.get(r["id"])) for r in rows]

    def result(self, result_id: int) -> StoredResult:
        """One stored result by id, with its latest review."""
        row = self.conn.execute(f"{self._RESULTS_SQL} WHERE r.id = ?", (result_id,)).fetchone()
        if row is None:
            raise StoreError(f"no result {result_id} in {self.path}")
        review = self.conn.execute(
            "SELECT * FROM reviews WHERE result_id = ? ORDER BY id DESC LIMIT 1", (result_id,)
        ).fetchone()
        return _stored(row, None if review is None else _review(review))

    def _latest_reviews(self, job_id: int | None) -> dict[int, ReviewRecord]:
        sql = "SELECT v.* FROM reviews v"
        if job_id is not None:
            sql += " JOIN results r ON r.id = v.result_id JOIN items i ON i.id = r.item_id WHERE i.job_id = ?"
        latest: dict[int, ReviewRecord] = {}
        for row in self.conn.execute(sql + " ORDER BY v.id", () if job_id is None else (job_id,)):
            latest[row["result_id"]] = _review(row)
        return latest

    def counts(self, job_id: int) -> dict[str, int]:
        """items, done (with a result), cached (answered from the store) and errors of a job."""
        row = self.conn.execute(
            "SELECT COUNT(*) AS items, COUNT(r.id) AS done, COUNT(r.cached_from) AS cached,"
            " COALESCE(SUM(r.status = 'error'), 0) AS errors"
            " FROM items i LEFT JOIN results r ON r.item_id = i.id WHERE i.job_id = ?",
            (job_id,),
        ).fetchone()
        return {k: int(row[k]) for k in ("items", "done", "cached", "errors")}

    # -- reviews and audit -------------------------------------------------------------------------
    def add_review(self, result_id: int, decision: str, *, data: Any = None, note: str = "", who: str) -> ReviewRecord:
        """Record a person's decision on a result (the latest one counts); `data` only for edits."""
        if decision not in DECISIONS:
            raise StoreError(f"unknown review decision {decision!r} (one of {', '.join(DECISIONS)})")
        self.result(result_id)  # a clear error for an unknown id
        stored = None if decision != "edit" else dumps(data)
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO reviews (result_id, decision, data, note, who, at) VALUES (?, ?, ?, ?, ?, ?)",
                (result_id, decision, stored, note, who, now()),
            )
            if decision == "edit":  # text search finds what a person corrected it to
                c.execute("DELETE FROM result_text WHERE rowid = ?", (result_id,))
                c.execute("INSERT INTO result_text (rowid, body) VALUES (?, ?)", (result_id, text_of(data)))
        row = self.conn.execute("SELECT * FROM reviews WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _review(row)

    def record_audit(
        self, kind: str, *, destination: str = "", detail: dict[str, Any] | None = None, job_id: int | None = None
    ) -> int:
        """Note something that left (or was about to leave) the machine."""
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO audit (at, job_id, kind, destination, detail) VALUES (?, ?, ?, ?, ?)",
                (now(), job_id, kind, destination, dumps(detail or {})),
            )
        return int(cur.lastrowid or 0)


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        key=row["key"],
        task=task_from_dict(json.loads(row["task"])),
        task_key=row["task_key"],
        model=row["model"],
        settings=json.loads(row["settings"]),
        launch=json.loads(row["launch"]),
        created=row["created"],
        updated=row["updated"],
        state=row["state"],
    )


def _review(row: sqlite3.Row) -> ReviewRecord:
    data = None if row["data"] is None else json.loads(row["data"])
    return ReviewRecord(row["id"], row["result_id"], row["decision"], data, row["note"], row["who"], row["at"])


def _stored(row: sqlite3.Row, review: ReviewRecord | None) -> StoredResult:
    return StoredResult(
        id=row["id"],
        job_id=row["job_id"],
        item_id=row["item_id"],
        path=row["path"],
        sha256=row["item_sha256"],
        result=result_from_row(row, row["task_name"]),
        cached_from=row["cached_from"],
        escalation=tuple(json.loads(row["escalation"])),
        created=row["created"],
        review=review,
    )


__all__ = ["SCHEMA_VERSION", "DuplicateResultError", "Store", "StoreError", "default_db_path"]
