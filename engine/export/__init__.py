"""Exports of stored results: files other tools read (JSONL, CSV, Parquet, COCO, Label Studio) and images."""

from __future__ import annotations

from pathlib import Path

from loupe.export.annotations import config_path, write_coco, write_labelstudio
from loupe.export.images import Written, write_labelled, write_overlays
from loupe.export.options import LOCAL_FILES, ExportOptions, options_for, schema_labels
from loupe.export.rows import Writer
from loupe.export.tables import write_csv, write_jsonl, write_parquet
from loupe.store.sqlite import StoreError

FORMATS: dict[str, Writer] = {
    "jsonl": write_jsonl,
    "csv": write_csv,
    "parquet": write_parquet,
    "coco": write_coco,
    "labelstudio": write_labelstudio,
}
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
TITLES = {  # what the window's File menu and save dialog call each format
    "jsonl": ("Export results as JSONL…", "JSON lines (*.jsonl)", ".jsonl"),
    "csv": ("Export results as CSV…", "CSV (*.csv)", ".csv"),
    "parquet": ("Export results as Parquet…", "Parquet (*.parquet)", ".parquet"),
    "coco": ("Export boxes as COCO…", "COCO JSON (*.json)", ".coco.json"),
    "labelstudio": ("Export for Label Studio…", "Label Studio tasks (*.json)", ".labelstudio.json"),
}
assert set(TITLES) == set(FORMATS)


class ExportFormatError(StoreError):
    """An export format that was not given and cannot be told from the output's name."""


def format_for(out: str | Path, given: str | None = None) -> str:
    """The format to write OUT in: GIVEN, else from OUT's suffix; a one-line error naming the choices otherwise."""
    if given is not None:
        if given not in FORMATS:
            raise ExportFormatError(f"unknown export format {given!r} (one of {', '.join(FORMATS)})")
        return given
    name = Path(out).name.lower()
    if name.endswith((".coco.json", "_coco.json")) or name == "coco.json":
        return "coco"
    if name.endswith((".labelstudio.json", "_labelstudio.json", ".ls.json")):
        return "labelstudio"
    suffix = Path(name).suffix
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    what = f"{suffix!r}" if suffix else "a name without a suffix"
    hint = " (COCO or Label Studio)" if suffix == ".json" else ""
    raise ExportFormatError(
        f"cannot tell the export format from {what}{hint}: give --format "
        f"({', '.join(FORMATS)}) or --out ending in {', '.join(SUFFIXES)}, .coco.json or .labelstudio.json"
    )


__all__ = [
    "FORMATS",
    "LOCAL_FILES",
    "SUFFIXES",
    "TITLES",
    "ExportFormatError",
    "ExportOptions",
    "Written",
    "config_path",
    "format_for",
    "options_for",
    "schema_labels",
    "write_labelled",
    "write_overlays",
]
