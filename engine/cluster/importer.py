"""`loupe import DIR`: the Parquet rows a `loupe batch --ray --out DIR` run wrote, stored once each in a results store
as the driver would have stored them (same job, same cache keys, same review queue). Needs pyarrow, never Ray."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loupe.batch import job_key, open_job
from loupe.cluster.rows import JOB_FILE, ROW_COLUMNS, ItemAnswer, from_row
from loupe.core.errors import LoupeError, TaskError
from loupe.core.tasks import Task
from loupe.core.tasks import task_from_dict as load_task_dict
from loupe.core.types import Status
from loupe.store.records import JobRecord, cache_key
from loupe.store.review import ReviewQueue
from loupe.store.sqlite import DuplicateResultError, Store

NEEDED = (*ROW_COLUMNS, "task")  # every column a row file must have
BATCH_ROWS = 1024  # rows read (and looked up in the store) at a time: memory stays flat however large the dataset
HINT = "give the --out folder of a `loupe batch --ray` run"


class OutDirError(LoupeError):
    """An --out folder that cannot be imported: no job file, a garbled one, or a row file that is not Loupe's."""


@dataclass(frozen=True)
class JobFile:
    """What the driver wrote in JOB_FILE: the job the rows belong to, as `loupe batch` opens it."""

    key: str
    task: Task
    model: str
    settings: dict[str, Any]
    launch: dict[str, Any]
    inputs: list[str]
    paths: list[str]


@dataclass(frozen=True)
class ImportSummary:
    """Where the job stands after an import (items, done, errors, review: over the whole job, like `loupe batch`)."""

    job: int
    items: int
    done: int
    imported: int  # rows stored by this import
    skipped: int  # rows whose item already had a result (an earlier import, a retried write, a local run)
    unknown: int  # rows for a path that is not one of the job's items
    errors: int
    review: int
    resumed: bool  # the job was in the store already

    def to_dict(self) -> dict[str, int]:
        """The `--json` summary line."""
        return {
            "job": self.job,
            "items": self.items,
            "done": self.done,
            "imported": self.imported,
            "skipped": self.skipped,
            "unknown": self.unknown,
            "errors": self.errors,
            "review": self.review,
        }


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "key": str,
    "task": dict,
    "model": str,
    "settings": dict,
    "launch": dict,
    "inputs": list,
    "paths": list,
}


def read_job_file(out_dir: str | Path) -> JobFile:
    """The job an --out folder belongs to, checked: its task parses and its key is the one `loupe batch` computes."""
    folder = Path(out_dir).expanduser()
    if not folder.is_dir():
        raise OutDirError(f"{out_dir}: {'not a folder' if folder.exists() else 'no such folder'}; {HINT}")
    path = folder / JOB_FILE
    if not path.is_file():
        raise OutDirError(f"{out_dir}: no {JOB_FILE} in it; {HINT} (the driver writes it when the run starts)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise OutDirError(f"{path}: not a text file") from None
    except json.JSONDecodeError as exc:
        raise OutDirError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise OutDirError(f"{path}: must hold a JSON object with {', '.join(_FIELDS)}")
    for name, kind in _FIELDS.items():
        if name not in raw:
            raise OutDirError(f"{path}: missing {name!r}")
        if not isinstance(raw[name], kind):
            raise OutDirError(f"{path}: {name!r} must be a {getattr(kind, '__name__', kind)}")
    for name in ("inputs", "paths"):
        if not all(isinstance(p, str) for p in raw[name]):
            raise OutDirError(f"{path}: {name!r} must be a list of file paths")
    task = _task(raw["task"], path)
    job = JobFile(
        key=raw["key"],
        task=task,
        model=raw["model"],
        settings=raw["settings"],
        launch=raw["launch"],
        inputs=raw["inputs"],
        paths=raw["paths"],
    )
    if job_key(job.inputs, job.task, job.model, job.settings) != job.key:
        raise OutDirError(
            f"{path}: its key does not match its inputs, task, model and settings (edited by hand, or written by "
            "another Loupe version)"
        )
    return job


def _task(raw: dict[str, Any], path: Path) -> Task:
    """The job's task (loupe.store.records.task_to_dict's shape), checked as a task file is."""
    fields = {k: v for k, v in raw.items() if k != "source"}
    try:
        task = load_task_dict(fields, f"{path} task")
    except TaskError as exc:
        raise OutDirError(f"the task does not parse: {exc}") from None
    return replace(task, source=str(raw.get("source", task.source)))


def row_files(out_dir: str | Path) -> list[str]:
    """The row files of an --out folder, found as pyarrow.dataset finds them (names starting with _ or . are not)."""
    pa, ds, _ = _pyarrow()
    found = ds.dataset(str(Path(out_dir).expanduser()), format="parquet", schema=pa.schema([]))
    return sorted(found.files)


def check_rows(files: list[str]) -> int:
    """How many rows the files hold, once each is known to be Parquet with every column of a row (footers only)."""
    total = 0
    for f in files:
        opened = _open(f)
        missing = [c for c in NEEDED if c not in set(opened.schema_arrow.names)]
        if missing:
            raise OutDirError(f"{f}: not a file of Loupe result rows (no column {', '.join(missing)})")
        total += opened.metadata.num_rows
    return total


def import_dir(
    store: Store,
    out_dir: str | Path,
    *,
    batch_rows: int = BATCH_ROWS,
    on_rows: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Store every row of an --out folder whose item has no result yet in the job; `on_rows(n)` after each batch."""
    spec = read_job_file(out_dir)
    files = row_files(out_dir)
    check_rows(files)  # every footer checked before anything is stored: a wrong file fails in a line, up front
    job, resumed = _open_job(store, spec)
    imported = skipped = unknown = 0
    for file in files:
        for rows in _batches(file, batch_rows):
            items = store.items_by_path(job.id, [str(r["path"]) for r in rows])
            with store.bulk():  # one commit per batch: a crash loses at most this batch, which a re-import brings
                for row in rows:
                    item = items.get(str(row["path"]))
                    if item is None:
                        unknown += 1
                        continue
                    if item.state == "done":
                        skipped += 1
                        continue
                    if _save(store, job, item.id, _answer(row, file)):
                        imported += 1
                    else:
                        skipped += 1
                    items[item.path] = replace(item, state="done")  # the same path again in this batch: skipped
            if on_rows is not None:
                on_rows(len(rows))
    counts = store.counts(job.id)
    store.set_state(job.id, "done" if counts["done"] == counts["items"] else "interrupted")
    review = len(ReviewQueue(store).pending(job.id))
    return ImportSummary(
        job=job.id,
        items=counts["items"],
        done=counts["done"],
        imported=imported,
        skipped=skipped,
        unknown=unknown,
        errors=counts["errors"],
        review=review,
        resumed=resumed,
    )


def _open_job(store: Store, spec: JobFile) -> tuple[JobRecord, bool]:
    """The job of this key if the store has it (finished or not: a second import adds to it), else a new one,
    opened as `loupe batch` opens it."""
    known = store.latest_job_with_key(spec.key)
    if known is not None:
        store.add_items(known.id, spec.paths)
        return known, True
    return open_job(
        store,
        inputs=spec.inputs,
        paths=spec.paths,
        task=spec.task,
        model=spec.model,
        settings=spec.settings,
        launch=spec.launch,
    )


def _save(store: Store, job: JobRecord, item_id: int, answer: ItemAnswer) -> bool:
    """Store one answer as the driver does (cache key unless an error); False when the item had a result already."""
    result = answer.result
    key = (
        None
        if answer.sha256 is None or result.status is Status.ERROR
        else cache_key(answer.sha256, job.task_key, job.model, job.settings_key)
    )
    try:
        store.save_result(
            item_id,
            result,
            sha256=answer.sha256,
            size=answer.size,
            cache_key=key,
            escalation=answer.escalation,
            phashes=answer.phashes,
        )
    except DuplicateResultError:  # stored meanwhile by another writer: the first one is kept
        return False
    return True


def _answer(row: dict[str, Any], file: str) -> ItemAnswer:
    """A row's answer, or a one-line error naming the file and the row's path."""
    try:
        return from_row(row)
    except (ValueError, KeyError, TypeError) as exc:  # json's errors are ValueErrors; a bad status too
        raise OutDirError(f"{file}: the row for {row.get('path')!r} is not a Loupe result ({exc})") from None


def _batches(file: str, size: int) -> Iterator[list[dict[str, Any]]]:
    """A row file's rows, `size` at a time (one row group is never read whole at once)."""
    pa, _, _ = _pyarrow()
    try:
        for batch in _open(file).iter_batches(batch_size=size, columns=list(NEEDED)):
            yield batch.to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise OutDirError(f"{file}: cannot read its rows ({_one_line(exc)})") from None


def _open(file: str) -> Any:
    """A row file opened as Parquet (its footer read), or a one-line error."""
    pa, _, pq = _pyarrow()
    try:
        return pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as exc:
        raise OutDirError(f"{file}: not a Parquet file ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _pyarrow() -> tuple[Any, Any, Any]:
    """pyarrow, its dataset and parquet modules (an extra: `loupe[export]` or `loupe[ray]`)."""
    try:
        import pyarrow
        import pyarrow.dataset
        import pyarrow.parquet
    except ImportError:
        raise OutDirError(
            "`loupe import` reads Parquet with pyarrow, which is not installed: pip install 'loupe[export]'"
        ) from None
    return pyarrow, pyarrow.dataset, pyarrow.parquet
