"""Writes fixtures/loupe-v1.db, a store as schema version 1 left it (run once; the file is committed).

python -m tests.store.make_fixture
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from loupe.core.tasks import builtin_task
from loupe.core.types import ImageInfo, Result, Status, Timings, Tokens
from loupe.store.migrations import migrate
from loupe.store.records import RESULT_COLUMNS, dumps, result_columns, task_key, task_to_dict

FIXTURE = Path(__file__).parent / "fixtures" / "loupe-v1.db"
STAMP = "2025-01-02T03:04:05.000+00:00"
V1_RESULT = Result(
    status=Status.OK,
    task="describe",
    model="smolvlm-256m",
    backend="llama_cpp",
    images=(ImageInfo("img_01", "/photos/panel.jpg", "ab" * 32, 800, 600, 512, 384),),
    data={"caption": "a grey metal panel", "tags": ["metal", "panel"]},
    raw='{"caption":"a grey metal panel"}',
    confidence={"/caption": 0.31, "/tags/0": 0.8, "/tags/1": 0.7},
    timings=Timings(total_ms=812.5),
    tokens=Tokens(prompt=90, image=64, completion=20),
)


def write(path: Path = FIXTURE) -> None:
    """A version-1 store holding one finished job with one result, its review and one pending item."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=1)
    task = builtin_task("describe")
    conn.execute(
        "INSERT INTO jobs VALUES (1, 'job-key-v1', ?, ?, ?, 'smolvlm-256m', ?, ?, ?, ?, 'interrupted')",
        (
            task.name,
            task_key(task),
            dumps(task_to_dict(task)),
            dumps({"backend": "llama_cpp"}),
            dumps({"inputs": ["/photos"], "model": "smolvlm-256m", "model_path": None, "mmproj": None}),
            STAMP,
            STAMP,
        ),
    )
    conn.execute("INSERT INTO items VALUES (1, 1, 0, '/photos/panel.jpg', ?, 1234, 'done')", ("ab" * 32,))
    conn.execute("INSERT INTO items (id, job_id, seq, path) VALUES (2, 1, 1, '/photos/other.jpg')")
    cols = ", ".join(RESULT_COLUMNS)
    conn.execute(
        f"INSERT INTO results (id, item_id, cache_key, cached_from, created, {cols}) VALUES (1, 1, 'ck', "
        f"NULL, ?, {', '.join('?' for _ in RESULT_COLUMNS)})",
        (STAMP, *result_columns(V1_RESULT)),
    )
    conn.execute(
        "INSERT INTO reviews VALUES (1, 1, 'edit', ?, 'fixed tags', 'ana', ?)",
        (dumps({"caption": "a grey metal panel", "tags": ["metal"]}), STAMP),
    )
    conn.execute("VACUUM")
    conn.close()


if __name__ == "__main__":
    write()
    print(f"wrote {FIXTURE}")
