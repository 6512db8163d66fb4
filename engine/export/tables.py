"""Tabular exports: JSONL (full records), CSV (one column per leaf, by JSON Pointer), Parquet (nested types)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from loupe.export.options import ExportOptions
from loupe.export.rows import FIXED_COLUMNS, atomic_open, columns, escape, fixed_row, flat_row, record
from loupe.store.records import StoredResult
from loupe.store.sqlite import StoreError


def write_jsonl(results: list[StoredResult], out: Path, options: ExportOptions | None = None) -> int:
    """One full JSON record per result."""
    with atomic_open(out, encoding="utf-8") as f:
        for stored in results:
            f.write(json.dumps(record(stored), ensure_ascii=False) + "\n")
    return len(results)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, bool) else value


def write_csv(results: list[StoredResult], out: Path, options: ExportOptions | None = None) -> int:
    """A header of column names (each data leaf by its JSON Pointer, arrays indexed: /defects/0/label), one row per
    result."""
    rows = [flat_row(s) for s in results]
    with atomic_open(out, encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns(rows), restval="")
        writer.writeheader()
        writer.writerows({k: _csv_cell(v) for k, v in row.items()} for row in rows)
    return len(rows)


def _scalar_column(values: list[Any]) -> tuple[list[Any], str]:
    """Values and an Arrow type name for a fixed column: its type when every value agrees, else JSON text."""
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


def _writable(kind: Any) -> bool:
    """Parquet stores it: no struct without fields (an empty object), no mixed types left to Arrow's guess."""
    import pyarrow as pa

    if pa.types.is_struct(kind):
        return kind.num_fields > 0 and all(_writable(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _writable(kind.value_type)
    return True


def _nested_column(values: list[Any]) -> Any:
    """A data column with Arrow's nested types (objects as structs, arrays as lists); JSON text where the values
    have no one type (e.g. a number in one row and a string in another)."""
    import pyarrow as pa

    ints_as_floats = [_floats(v) for v in values]
    for candidate in (values, ints_as_floats):
        try:
            array = pa.array(candidate)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            continue
        if _writable(array.type):
            return array
    return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values], type=pa.string())


def _floats(value: Any) -> Any:
    """Integers as floats, for a column where one row has 3 and another 2.5 inside a nested value."""
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def nested_row(stored: StoredResult) -> dict[str, Any]:
    """One Parquet row: the fixed columns, then one column per top-level data key (named `/key`), values nested."""
    row = fixed_row(stored)
    data = stored.final_data
    if isinstance(data, dict):
        row.update({f"/{escape(str(k))}": v for k, v in data.items()})
    elif data is not None:
        row["/"] = data
    return row


def write_parquet(results: list[StoredResult], out: Path, options: ExportOptions | None = None) -> int:
    """The fixed columns and one column per top-level data key, with nested types: lists and structs as the data
    has them, so pyarrow, pandas and duckdb read `/defects` as a list of structs (needs pyarrow:
    `pip install 'loupe[export]'`)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise StoreError("parquet export needs pyarrow: pip install 'loupe[export]'") from None
    rows = [nested_row(s) for s in results]
    names = list(dict.fromkeys([*FIXED_COLUMNS, *(k for row in rows for k in row)]))
    arrays = []
    for name in names:
        values = [row.get(name) for row in rows]
        if name in FIXED_COLUMNS:
            values, kind = _scalar_column(values)
            arrays.append(pa.array(values, type=getattr(pa, kind)()))
        else:
            arrays.append(_nested_column(values))
    with atomic_open(out, "wb") as f:
        pq.write_table(pa.Table.from_arrays(arrays, names=names), f)
    return len(rows)
