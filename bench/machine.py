"""What this machine can do, measured in the same run as the benchmark: memory read bandwidth and matmul GFLOP/s."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def read_bandwidth_gbs(threads: int, *, mb: int = 512, repeats: int = 5) -> float:
    """Best GB/s reading a `mb` MB float32 array once, split over `threads` threads (numpy releases the GIL)."""
    data = np.ones(mb * 1024 * 1024 // 4, dtype=np.float32)
    parts = np.array_split(data, threads)
    best = float("inf")
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(np.sum, parts))  # touch every page first
        for _ in range(repeats):
            t = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = min(best, time.perf_counter() - t)
    return data.nbytes / best / 1e9


def matmul_gflops(*, n: int = 1024, repeats: int = 10) -> float:
    """Best fp32 GFLOP/s of an n x n matrix product through numpy's BLAS (its own threads: all cores)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm the BLAS threads
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def measure(threads: int) -> dict[str, float]:
    """Both numbers, for the report."""
    return {"read_gbs": read_bandwidth_gbs(threads), "matmul_gflops": matmul_gflops(), "threads": threads}
