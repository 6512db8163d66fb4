"""Tabular exports: JSONL (full records), CSV and Parquet (one column per data field)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from loupe.export.rows import atomic_open, columns, flat_row, record
from loupe.store.records import StoredResult
from loupe.store.sqlite import StoreError


def write_jsonl(results: list[StoredResult], out: Path) -> int:
    """One full JSON record per result."""
    with atomic_open(out, encoding="utf-8") as f:
        for stored in results:
            f.write(json.dumps(record(stored), ensure_ascii=False) + "\n")
    return len(results)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, bool) else value


def write_csv(results: list[StoredResult], out: Path) -> int:
    """A header of column names (data fields as /a/b pointers), one row per result; lists as JSON text."""
    rows = [flat_row(s) for s in results]
    with atomic_open(out, encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns(rows), restval="")
        writer.writeheader()
        writer.writerows({k: _csv_cell(v) for k, v in row.items()} for row in rows)
    return len(rows)


def _column(values: list[Any]) -> tuple[list[Any], str]:
    """Values and an Arrow type name: a column keeps its type when every value agrees, else becomes JSON text."""
    present = [v for v in values if v is not None]
    kinds = {type(v) for v in present}
    if kinds and kinds <= {bool}:
        return values, "bool"
    if kinds and kinds <= {int}:
        return values, "int64"
    if kinds and kinds <= {int, float}:
        return [None if v is None else float(v) for v in values], "float64"
    if kinds <= {str}:
        return values, "string"
    return [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values], "string"


def write_parquet(results: list[StoredResult], out: Path) -> int:
    """The CSV's columns as a Parquet table (needs pyarrow: `pip install 'loupe[export]'`)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise StoreError("parquet export needs pyarrow: pip install 'loupe[export]'") from None
    rows = [flat_row(s) for s in results]
    arrays, names = [], columns(rows)
    for name in names:
        values, kind = _column([row.get(name) for row in rows])
        arrays.append(pa.array(values, type=getattr(pa, kind)()))
    with atomic_open(out, "wb") as f:
        pq.write_table(pa.Table.from_arrays(arrays, names=names), f)
    return len(rows)
