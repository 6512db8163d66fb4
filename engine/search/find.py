"""The four searches over a results store, each answering `Hit` rows (best first).

Similar images (`like`) is exact k-nearest-neighbours by cosine over every stored vector of the query's model,
detail and size, computed with numpy on vectors read from the store in one query: exact (no recall to measure),
no index to build or keep in step, and no SQLite extension to load (`sqlite-vec`'s vec0 tables are also an exact
scan, but need `enable_load_extension`, which some Python builds leave out, for no gain at this size). It reads
N x dim float32 per query, so it is for one store file of a few hundred thousand images at most; past that, the
same vectors (model, detail, dim, float32 blob) go to an approximate index (LanceDB, a vector server) unchanged.

Near-duplicates (`dupes`) compare 64-bit perceptual hashes by Hamming distance (all pairs, in numpy blocks) and
group them (single linkage: A~B and B~C put A, B and C together). They need no model: every stored image has one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from loupe.core.errors import LoupeError
from loupe.search.filters import Filters
from loupe.store import Store
from loupe.store.index import phash_file, to_unsigned

DEFAULT_LIMIT = 20
DEFAULT_MAX_DISTANCE = 8  # of 64 bits: resized and re-compressed copies measure 0-4 here, unrelated photos ~32


class SearchError(LoupeError):
    """A search that cannot be run as asked (an unknown result, an unreadable image, an empty query)."""


@dataclass(frozen=True)
class Hit:
    """One result a search found. `score`: cosine similarity for `like` by vectors (1.0: the same direction),
    bm25 relevance for `text` (higher is better); `distance`: Hamming distance between 64-bit perceptual hashes
    (`dupes`, and `like` by hash: 0 is the same picture); `group`: which set of near-duplicates (`dupes`)."""

    result_id: int
    job_id: int
    path: str
    status: str
    created: str
    score: float | None = None
    distance: int | None = None
    group: int | None = None
    image_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


class Hits(list[Hit]):
    """Rows of one search, best first, with what was compared (`measure`) and a note for the user, if any."""

    def __init__(self, rows: list[Hit] = (), *, measure: str = "", note: str = "") -> None:  # type: ignore[assignment]
        super().__init__(rows)
        self.measure = measure
        self.note = note


@dataclass(frozen=True)
class _Row:
    id: int
    job_id: int
    path: str
    status: str
    created: str


def _rows(store: Store, filters: Filters | None) -> dict[int, _Row]:
    """Every stored result that passes the filters, by id (the data is read only when --where needs it)."""
    filters = filters or Filters()
    where, args = filters.sql()
    need_data = bool(filters.conditions)
    data_cols = (
        ", r.data, (SELECT v.decision || char(0) || COALESCE(v.data, '') FROM reviews v WHERE v.result_id = r.id"
        " ORDER BY v.id DESC LIMIT 1) AS review"
        if need_data
        else ""
    )
    sql = (
        f"SELECT r.id, i.job_id, i.path, r.status, r.created{data_cols} FROM results r"
        f" JOIN items i ON i.id = r.item_id WHERE {where} ORDER BY r.id"
    )
    out: dict[int, _Row] = {}
    for r in store.conn.execute(sql, args):
        if need_data:
            data = None if r["data"] is None else json.loads(r["data"])
            if r["review"]:
                decision, _, edited = r["review"].partition("\0")
                if decision == "edit":
                    data = json.loads(edited) if edited else None
            if not filters.matches(data):
                continue
        out[r["id"]] = _Row(r["id"], r["job_id"], r["path"], r["status"], r["created"])
    return out


def _hit(row: _Row, **extra: Any) -> Hit:
    return Hit(row.id, row.job_id, row.path, row.status, row.created, **extra)


# -- where, text ---------------------------------------------------------------------------------------


def where(store: Store, expr: str = "", *, filters: Filters | None = None, limit: int | None = None) -> Hits:
    """Results whose data matches EXPR (`/defects/*/label = crack AND /total > 100`) and the other filters,
    in the order they were stored."""
    filters = replace(filters or Filters(), where=expr) if expr else (filters or Filters())
    rows = list(_rows(store, filters).values())
    return Hits([_hit(r) for r in rows[:limit]])


def _fts_query(query: str) -> str:
    """The user's words as an FTS5 query: every word must appear (a trailing * makes a word a prefix)."""
    words = [w for w in re.split(r"\s+", query.strip()) if w.strip('"*')]
    if not words:
        raise SearchError("--text: give some words to look for")
    out = []
    for w in words:
        prefix = w.endswith("*")
        core = w.rstrip("*").replace('"', '""')
        out.append(f'"{core}"' + ("*" if prefix else ""))
    return " ".join(out)


def text(store: Store, query: str, *, filters: Filters | None = None, limit: int | None = None) -> Hits:
    """Results whose text (the string values of their data) has every word of QUERY, most relevant first (FTS5's
    bm25). Results stored before search existed are found after `loupe index`."""
    allowed = _rows(store, filters)
    try:
        matched = store.conn.execute(
            "SELECT rowid, rank FROM result_text WHERE result_text MATCH ? ORDER BY rank", (_fts_query(query),)
        ).fetchall()
    except sqlite3.OperationalError as exc:
        raise SearchError(f"--text {query!r}: {exc}") from None
    hits = [_hit(allowed[r[0]], score=round(-float(r[1]), 6)) for r in matched if r[0] in allowed]
    return Hits(hits[:limit], measure="bm25")


# -- like ----------------------------------------------------------------------------------------------


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    return table[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1)


def _hashes(store: Store, allowed: dict[int, _Row]) -> tuple[list[tuple[int, str]], np.ndarray]:
    keys, values = [], []
    for r in store.conn.execute(
        "SELECT result_id, image_id, phash FROM image_hashes WHERE phash IS NOT NULL ORDER BY result_id, image_id"
    ):
        if r[0] in allowed:
            keys.append((int(r[0]), str(r[1])))
            values.append(to_unsigned(int(r[2])))
    return keys, np.array(values, dtype=np.uint64)


def _resolve(store: Store, query: str | int) -> tuple[int | None, Path | None]:
    """A result id, or an image file (and the stored result of the same bytes, if any)."""
    text_q = str(query).strip()
    if isinstance(query, int) or (text_q.isdigit() and not os.path.exists(text_q)):
        rid = int(text_q)
        if store.conn.execute("SELECT 1 FROM results WHERE id = ?", (rid,)).fetchone() is None:
            raise SearchError(f"--like {rid}: no result {rid} in {store.path}")
        return rid, None
    path = Path(text_q).expanduser()
    if not path.is_file():
        raise SearchError(f"--like {text_q}: no such image file (or result id)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    row = store.conn.execute(
        "SELECT r.id FROM results r JOIN items i ON i.id = r.item_id WHERE i.sha256 = ?"
        " ORDER BY EXISTS (SELECT 1 FROM image_vectors v WHERE v.result_id = r.id) DESC, r.id LIMIT 1",
        (digest,),
    ).fetchone()
    return (None if row is None else int(row[0])), path


def like(store: Store, query: str | int, k: int = DEFAULT_LIMIT, *, filters: Filters | None = None) -> Hits:
    """The k stored results whose image looks most like QUERY (a result id, or an image file), most alike first:
    by the model's image vectors when QUERY has one (a result, or an image already analysed into the store), else
    by perceptual hash (near copies only, with a note saying so). `loupe search` loads no model: an image not in
    the store is not analysed here (`loupe batch IMAGE` stores it, with its vector, in seconds)."""
    allowed = _rows(store, filters)
    rid, path = _resolve(store, query)
    vectors = store.embeddings(rid) if rid is not None else ()
    if vectors:
        return _like_vectors(store, rid, vectors[0], allowed, k)  # type: ignore[arg-type]
    any_vectors = store.conn.execute("SELECT 1 FROM image_vectors LIMIT 1").fetchone() is not None
    if rid is not None:
        h = store.conn.execute(
            "SELECT phash FROM image_hashes WHERE result_id = ? AND phash IS NOT NULL ORDER BY image_id LIMIT 1",
            (rid,),
        ).fetchone()
        value = None if h is None else to_unsigned(int(h[0]))
        why = f"result {rid} has no image vector (its backend gave none, or it was stored before vectors were)"
    else:
        value = phash_file(path)  # type: ignore[arg-type]
        if value is None:
            raise SearchError(f"--like {query}: cannot read it as an image")
        why = f"{path} has not been analysed into this store"
        if any_vectors:
            why += " (analyse it first, e.g. `loupe batch IMAGE --db STORE`, to compare by the model's vectors)"
    if value is None:
        raise SearchError(f"--like {query}: {why}, and its image could not be read for a perceptual hash")
    keys, values = _hashes(store, allowed)
    if not keys:
        return Hits([], measure="hamming", note=f"{why}; no stored image has a perceptual hash (run `loupe index`)")
    dist = _popcount(values ^ np.uint64(value))
    best: dict[int, tuple[int, str]] = {}
    for (result_id, image_id), d in zip(keys, dist.tolist(), strict=True):
        if result_id not in best or d < best[result_id][0]:
            best[result_id] = (int(d), image_id)
    order = sorted(best, key=lambda r: (best[r][0], r != rid, r))[:k]
    hits = [_hit(allowed[r], distance=best[r][0], image_id=best[r][1]) for r in order]
    return Hits(hits, measure="hamming", note=f"{why}: ranked by perceptual hash, which finds near copies only")


def _like_vectors(store: Store, rid: int, query: Any, allowed: dict[int, _Row], k: int) -> Hits:
    rows = store.conn.execute(
        "SELECT result_id, image_id, vector FROM image_vectors WHERE model = ? AND detail = ? AND dim = ?",
        (query.model, query.detail, query.dim),
    ).fetchall()
    rows = [r for r in rows if r[0] in allowed]
    if not rows:
        return Hits([], measure="cosine")
    mat = np.frombuffer(b"".join(bytes(r[2]) for r in rows), dtype="<f4").reshape(len(rows), query.dim)
    q = np.frombuffer(query.vector, dtype="<f4").astype(np.float64)
    norms = np.linalg.norm(mat, axis=1) * (np.linalg.norm(q) or 1.0)
    sims = (mat.astype(np.float64) @ q) / np.where(norms == 0, 1.0, norms)
    best: dict[int, tuple[float, str]] = {}
    for r, s in zip(rows, sims.tolist(), strict=True):
        if r[0] not in best or s > best[r[0]][0]:
            best[r[0]] = (float(s), str(r[1]))
    order = sorted(best, key=lambda x: (-best[x][0], x != rid, x))[:k]
    hits = [_hit(allowed[x], score=round(best[x][0], 6), image_id=best[x][1]) for x in order]
    return Hits(hits, measure="cosine")


# -- dupes ---------------------------------------------------------------------------------------------


def dupes(
    store: Store, max_distance: int = DEFAULT_MAX_DISTANCE, *, filters: Filters | None = None, limit: int | None = None
) -> Hits:
    """Groups of near-duplicate images (perceptual hashes at most MAX_DISTANCE bits apart), each group's rows
    in store order with their distance to its first; groups with one member are left out."""
    if not 0 <= max_distance <= 64:
        raise SearchError(f"--max-distance {max_distance}: give 0-64 (bits of a 64-bit perceptual hash)")
    allowed = _rows(store, filters)
    keys, values = _hashes(store, allowed)
    n = len(keys)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    block = 2048
    for start in range(0, n, block):
        part = values[start : start + block]
        dist = _popcount(part[:, None] ^ values[None, :])
        for a, b in zip(*np.nonzero(dist <= max_distance), strict=True):
            i, j = start + int(a), int(b)
            if i < j:
                parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    hits: list[Hit] = []
    found = sorted((m for m in groups.values() if len({keys[i][0] for i in m}) > 1), key=lambda m: m[0])
    for number, members in enumerate(found, 1):
        first = values[members[0]]
        for i in members:
            d = int(_popcount(np.array([values[i] ^ first], dtype=np.uint64))[0])
            hits.append(_hit(allowed[keys[i][0]], distance=d, group=number, image_id=keys[i][1]))
    return Hits(hits[:limit], measure="hamming")
