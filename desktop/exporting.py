"""Exports from the window, Qt-free: this session's results in every format the CLI writes, overlays, labelled set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loupe.export import FORMATS, TITLES, config_path, options_for, write_labelled, write_overlays
from loupe.store import ReviewQueue, Store, StoredResult

KINDS = (*FORMATS, "overlays", "labelled")
# (kind, File menu title, save-dialog filter, default file name); no filter: the dialog asks for a folder
CHOICES = (
    *((kind, title, pattern, f"loupe-results{suffix}") for kind, (title, pattern, suffix) in TITLES.items()),
    ("overlays", "Export overlay images…", "", ""),
    ("labelled", "Export the labelled set…", "", ""),
)


def _jobs(store: Store, job_ids: Sequence[int]) -> list[int]:
    return list(job_ids) or [store.latest_job().id]


def export(db_path: Path, job_ids: Sequence[int], out: Path, kind: str) -> str:
    """Write one export (run it off the GUI thread: it opens its own store connection); a one-line summary."""
    if kind not in KINDS:
        raise ValueError(f"unknown export {kind!r} (one of {', '.join(KINDS)})")
    with Store(db_path) as store:
        jobs = _jobs(store, job_ids)
        results: list[StoredResult] = [s for job in jobs for s in store.results(job)]
        if kind == "overlays":
            written = write_overlays(results, out)
            return f"{written.written} overlay image(s) in {out}" + _skipped(written.skipped)
        if kind == "labelled":
            ids = {s.id for s in results}
            labelled = [s for s in ReviewQueue(store).labelled() if s.id in ids]
            written = write_labelled(store, labelled, out)
            return f"{written.written} labelled image(s) in {out}" + _skipped(written.skipped)
        options = options_for(store, jobs, results)
        count = FORMATS[kind](results, out, options)
        summary = f"{count} result(s) written to {out}"
        if kind in ("coco", "labelstudio"):
            summary += f" (image paths relative to {options.image_root})"
        if kind == "labelstudio":
            summary += f"; labelling config in {config_path(out).name}"
        return summary


def _skipped(skipped: Sequence[str]) -> str:
    return f" ({len(skipped)} skipped: {skipped[0]})" if skipped else ""
