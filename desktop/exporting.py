"""Exports from the window, Qt-free: this session's results as JSONL/CSV, overlay images, or the labelled set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loupe.export import FORMATS, write_labelled, write_overlays
from loupe.store import ReviewQueue, Store, StoredResult

KINDS = ("jsonl", "csv", "overlays", "labelled")


def _results(store: Store, job_ids: Sequence[int]) -> list[StoredResult]:
    jobs = list(job_ids) or [store.latest_job().id]
    return [s for job in jobs for s in store.results(job)]


def export(db_path: Path, job_ids: Sequence[int], out: Path, kind: str) -> str:
    """Write one export (run it off the GUI thread: it opens its own store connection); a one-line summary."""
    if kind not in KINDS:
        raise ValueError(f"unknown export {kind!r} (one of {', '.join(KINDS)})")
    with Store(db_path) as store:
        results = _results(store, job_ids)
        if kind == "overlays":
            written = write_overlays(results, out)
            return f"{written.written} overlay image(s) in {out}" + _skipped(written.skipped)
        if kind == "labelled":
            ids = {s.id for s in results}
            labelled = [s for s in ReviewQueue(store).labelled() if s.id in ids]
            written = write_labelled(store, labelled, out)
            return f"{written.written} labelled image(s) in {out}" + _skipped(written.skipped)
        count = FORMATS[kind](results, out)
        return f"{count} result(s) written to {out}"


def _skipped(skipped: Sequence[str]) -> str:
    return f" ({len(skipped)} skipped: {skipped[0]})" if skipped else ""
