"""Similar-image search at scale: exact cosine k-NN over stored image vectors, and what making a vector costs.

    python -m bench.search [--quick] [--json OUT] [--sizes 10000,100000,1000000] [--dims 576,2560] [--k 10]
                           [--queries N] [--max-gb 3] [--model smolvlm-256m] [--model-dir DIR] [--threads N]
                           [--skip query,sqlite_vec,insert]

Sections (each prints lines; --json writes every number):
  query       the embedded default's reference: N unit float32 vectors (random, like the analysis makes: mean-pooled
              projector output, L2-normalized) at each dimension, one query vector, cosine = dot product (numpy BLAS
              sgemv) over blocks of 100k rows with a top-k merge: median ms per query and the index size on disk
              (float32 x dim x N, the vector column's bytes). Past --max-gb the same resident block is scanned
              N/100k times (`resident: false`): the arithmetic and memory traffic of the full scan, without holding
              a matrix this machine's memory cannot spare.
  sqlite_vec  the same query through sqlite-vec's vec0 table (exact, cosine) where this Python's sqlite3 can load
              extensions and the package is installed (sizes up to 100k; it is skipped with the reason otherwise).
  insert      the per-image cost search adds to an analysis: one real analysis on the synthetic model with real
              dimensions (random weights, bench.sides.bench_task), then pooling that image's real projector output
              (read from the backend's embedding cache, exactly as the prefill pools it) and writing its vector into
              a SQLite table: insert_overhead = (pool + write) / analysis (goal <= 1 %). The analysis encodes the
              same image chunks with or without the vector (image_chunks_encoded is recorded).
Dimensions are the projector's output size, the vector Loupe stores: SmolVLM-256M 576, Gemma 3 4B 2560.
--quick: 5 queries per size, 64 new tokens for the analysis; well under three minutes on two cores.
"""

from __future__ import annotations

import os

# one BLAS thread, set before numpy loads: a scan is memory-bound, a server answers queries side by side, and a
# thread pool spinning against other work on a small machine made queries 100x slower here
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from loupe.backends.reuse import pool_slice, pooled_vector  # noqa: E402
from loupe.core.hardware import default_threads  # noqa: E402

from bench._models import DEFAULT_DIR, choices, synthetic  # noqa: E402
from bench.sides import bench_task  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "engine" / "samples" / "scratched-panel.jpg"
BLOCK = 100_000
SECTIONS = ("query", "sqlite_vec", "insert")
MODEL_DIMS = {576: "SmolVLM-256M", 2560: "Gemma 3 4B"}


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """`n` random unit float32 vectors (rows)."""
    m = rng.standard_normal((n, dim), dtype=np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m


def top_k(blocks: list[np.ndarray], q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows by cosine (rows and q unit): (global row ids, scores), best first."""
    ids: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    base = 0
    for block in blocks:
        s = block @ q
        kk = min(k, len(s))
        part = np.argpartition(-s, kk - 1)[:kk]
        ids.append(part + base)
        scores.append(s[part])
        base += len(block)
    all_ids, all_scores = np.concatenate(ids), np.concatenate(scores)
    order = np.argsort(-all_scores, kind="stable")[:k]
    return all_ids[order], all_scores[order]


def query_section(sizes: list[int], dims: list[int], k: int, queries: int, max_gb: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for dim in dims:
        for n in sizes:
            nbytes = n * dim * 4
            resident = nbytes <= max_gb * 1e9
            t0 = time.perf_counter()
            if resident:
                blocks = [unit_rows(rng, min(BLOCK, n - i), dim) for i in range(0, n, BLOCK)]
            else:
                one = unit_rows(rng, BLOCK, dim)
                blocks = [one] * (n // BLOCK) + ([one[: n % BLOCK]] if n % BLOCK else [])
            build_s = time.perf_counter() - t0
            # the query is a stored vector: it must come back first (a check that the scan is right)
            probe = blocks[-1][-1]
            got, _ = top_k(blocks, probe, k)
            assert got[0] == n - 1 or not resident, "the query's own row is not its nearest"
            times = []
            for _ in range(queries):
                q = unit_rows(rng, 1, dim)[0]
                t = time.perf_counter()
                top_k(blocks, q, k)
                times.append((time.perf_counter() - t) * 1000)
            row = {
                "dim": dim,
                "model": MODEL_DIMS.get(dim, ""),
                "n": n,
                "k": k,
                "query_ms_median": round(statistics.median(times), 3),
                "query_ms_min": round(min(times), 3),
                "queries": queries,
                "index_bytes": nbytes,
                "index_mib": round(nbytes / 2**20, 1),
                "resident": resident,
                "build_s": round(build_s, 2),
            }
            rows.append(row)
            note = "" if resident else " (one 100k block scanned repeatedly)"
            print(
                f"query numpy dim {dim:5d} n {n:>9,}: {row['query_ms_median']:9.2f} ms/query (k={k}), "
                f"index {row['index_mib']:8.1f} MiB{note}",
                flush=True,
            )
            del blocks
    return rows


def _vec_connection(path: str) -> sqlite3.Connection:
    import sqlite_vec  # type: ignore[import-not-found]

    con = sqlite3.connect(path)
    con.enable_load_extension(True)
    sqlite_vec.load(con)
    con.enable_load_extension(False)
    return con


def sqlite_vec_section(sizes: list[int], dims: list[int], k: int, queries: int, tmp: Path) -> dict[str, Any]:
    try:
        _vec_connection(":memory:").close()
    except (ImportError, AttributeError, sqlite3.Error) as exc:
        why = f"sqlite-vec not usable here: {type(exc).__name__}: {exc}"
        print(f"sqlite_vec skipped: {why}", flush=True)
        return {"skipped": why}
    rng = np.random.default_rng(1)
    rows = []
    for dim in dims:
        for n in (s for s in sizes if s <= 100_000):
            db = tmp / f"vec-{dim}-{n}.db"
            con = _vec_connection(str(db))
            con.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{dim}] distance_metric=cosine)")
            t0 = time.perf_counter()
            for i in range(0, n, 10_000):
                block = unit_rows(rng, min(10_000, n - i), dim)
                con.executemany(
                    "INSERT INTO v(rowid, embedding) VALUES (?, ?)",
                    ((i + j + 1, block[j].tobytes()) for j in range(len(block))),
                )
            con.commit()
            insert_s = time.perf_counter() - t0
            times = []
            for _ in range(queries):
                q = unit_rows(rng, 1, dim)[0].tobytes()
                t = time.perf_counter()
                con.execute("SELECT rowid, distance FROM v WHERE embedding MATCH ? AND k = ?", (q, k)).fetchall()
                times.append((time.perf_counter() - t) * 1000)
            con.close()
            row = {
                "dim": dim,
                "n": n,
                "query_ms_median": round(statistics.median(times), 3),
                "insert_s": round(insert_s, 2),
                "file_bytes": db.stat().st_size,
            }
            rows.append(row)
            db.unlink()
            print(
                f"query sqlite-vec dim {dim:5d} n {n:>9,}: {row['query_ms_median']:9.2f} ms/query, "
                f"file {row['file_bytes'] / 2**20:.1f} MiB",
                flush=True,
            )
    return {"rows": rows}


def insert_section(model: str, model_dir: Path, threads: int, max_tokens: int, detail: str) -> dict[str, Any]:
    from loupe.api import AnalyzeRequest, Engine
    from loupe.backends.llama_cpp import LlamaCppBackend

    files = synthetic(model, model_dir)
    backend = LlamaCppBackend(files.text_path, files.mmproj_path, model_id=model, n_threads=threads)
    try:
        task = bench_task("defects", max_tokens=max_tokens, detail=detail)
        engine = Engine(backend)
        engine.analyze(AnalyzeRequest((SAMPLE,), task))  # warm-up: the model's pages, the constraint compiled
        backend.forget()
        t = time.perf_counter()
        result = engine.analyze(AnalyzeRequest((SAMPLE,), task))
        analysis_ms = (time.perf_counter() - t) * 1000
        # after forget(), the embedding cache holds exactly what this analysis encoded: the image, slice by slice
        parts = list(backend._embeds._items.values())
        n_embd = backend.model.n_embd
        reps = 50
        t = time.perf_counter()
        for _ in range(reps):
            vector = pooled_vector([pool_slice(p, n_embd) for p in parts])
        pool_ms = (time.perf_counter() - t) * 1000 / reps
        assert result.embeddings and vector == result.embeddings[0].vector, "the bench pooled another vector"
        with tempfile.TemporaryDirectory() as tmp:
            con = sqlite3.connect(Path(tmp) / "v.db")
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE vectors (id INTEGER PRIMARY KEY, model TEXT, detail TEXT, vector BLOB)")
            t = time.perf_counter()
            for i in range(reps):
                with con:
                    con.execute("INSERT INTO vectors VALUES (?, ?, ?, ?)", (i, model, detail, vector))
            write_ms = (time.perf_counter() - t) * 1000 / reps
            con.close()
    finally:
        backend.close()
    out = {
        "model": model,
        "detail": detail,
        "dim": len(vector) // 4,
        "image_tokens": result.tokens.image,
        "image_chunks_encoded": len(parts),
        "analysis_ms": round(analysis_ms, 1),
        "pool_ms": round(pool_ms, 4),
        "vector_write_ms": round(write_ms, 4),
        "insert_overhead": round((pool_ms + write_ms) / analysis_ms, 6),
    }
    print(
        f"insert {model} dim {out['dim']}: pool {pool_ms:.3f} ms + write {write_ms:.3f} ms per image vs one "
        f"analysis {analysis_ms:.0f} ms ({out['image_tokens']} image tokens): insert_overhead "
        f"{out['insert_overhead'] * 100:.3f} %",
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dims", default="576,2560")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=None)
    ap.add_argument("--max-gb", type=float, default=3.0, help="largest matrix held in memory (GB)")
    ap.add_argument("--model", default="smolvlm-256m", choices=choices())
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--detail", default="low")
    ap.add_argument("--skip", default="", help=f"comma-separated sections to skip: {','.join(SECTIONS)}")
    args = ap.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    sizes = [int(s) for s in args.sizes.split(",") if s]
    dims = [int(d) for d in args.dims.split(",") if d]
    queries = args.queries or (5 if args.quick else 20)
    max_tokens = args.max_tokens or (64 if args.quick else 128)
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "numpy": np.__version__},
        "quick": args.quick,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    if "query" not in skip:
        report["query"] = query_section(sizes, dims, args.k, queries, args.max_gb)
    if "sqlite_vec" not in skip:
        with tempfile.TemporaryDirectory() as tmp:
            report["sqlite_vec"] = sqlite_vec_section(sizes, dims, args.k, queries, Path(tmp))
    if "insert" not in skip:
        threads = args.threads or default_threads()
        report["insert"] = insert_section(args.model, args.model_dir, threads, max_tokens, args.detail)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
