"""The row a Ray worker sends back (and --out writes as Parquet) rebuilds the exact answer, embeddings included."""

from __future__ import annotations

import pyarrow as pa
from loupe.cluster.rows import ItemAnswer, from_row, rows_to_columns, to_row
from loupe.core.types import Box, ImageEmbedding, ImageInfo, Result, Status, Timings, Tokens


def _answer() -> ItemAnswer:
    result = Result(
        status=Status.OK,
        task="defects",
        model="smolvlm-256m",
        backend="llama_cpp",
        images=(ImageInfo("img0", "/data/a.jpg", "ab" * 32, 640, 480, 512, 384, ("exif_transpose",)),),
        data={"defects": [{"label": "scratch", "box_2d": [1, 2, 3, 4]}]},
        raw='{"defects": []}',
        confidence={"/defects/0/label": 0.25},
        boxes=(Box("/defects/0", "scratch", (1.0, 2.0, 3.0, 4.0), (1, 2, 3, 4), "img0", 0.25),),
        timings=Timings(total_ms=12.5),
        tokens=Tokens(prompt=10, image=64, completion=7),
        attempts=2,
        model_confidence={"/defects/0/label": 0.1},
        embeddings=(ImageEmbedding("img0", "smolvlm-256m", "high", b"\x00\x00\x80?" * 3),),
    )
    return ItemAnswer(7, "/data/a.jpg", "ab" * 32, 1234, result, ({"label": "local"},), {"img0": -5})


def test_row_round_trip_keeps_everything() -> None:
    answer = _answer()
    back = from_row(to_row(answer))
    assert back == answer
    assert back.result.embeddings == answer.result.embeddings  # not part of Result's equality


def test_rows_survive_arrow() -> None:
    """Through an Arrow table (what Ray Data blocks and Parquet files are) and back."""
    table = pa.table(rows_to_columns([to_row(_answer())]))
    (row,) = table.to_pylist()
    assert from_row(row) == _answer()
    assert from_row(row).result.embeddings == _answer().result.embeddings
