"""Exports of stored results: files other tools read (JSONL, CSV, Parquet, COCO, Label Studio) and images."""

from __future__ import annotations

from loupe.export.annotations import write_coco, write_labelstudio
from loupe.export.images import Written, write_labelled, write_overlays
from loupe.export.rows import Writer
from loupe.export.tables import write_csv, write_jsonl, write_parquet

FORMATS: dict[str, Writer] = {
    "jsonl": write_jsonl,
    "csv": write_csv,
    "parquet": write_parquet,
    "coco": write_coco,
    "labelstudio": write_labelstudio,
}
SUFFIXES = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}  # a guess when --format is not given

__all__ = ["FORMATS", "SUFFIXES", "Written", "write_labelled", "write_overlays"]
