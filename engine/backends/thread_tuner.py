"""The decode thread count chosen from measured token times, because the best count depends on what else runs.

One thread per physical core is the fastest on a quiet machine (SmolVLM-256M dims, 2 cores: 9.3 ms/token with 2
threads, 12.6 with 1). When another program keeps a core busy, every token waits at each of its ~600 thread
barriers for the thread that shares that core: 50.8 ms/token with 2 threads against 14.7 with 1. So while it
decodes, the backend now and then spends a few tokens on another thread count, and keeps whichever was faster.
Threads do not change the result: llama.cpp splits a token's matrix products by output rows, so each dot product
is summed by one thread in the same order.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class ThreadTuner:
    """Per-token decode times -> the thread count for the next token.

    It runs `window` tokens at the current count, then `window` at a neighbour (half or double, within 1 and
    `max_threads`), and moves to the neighbour only if its median time is below `margin` times the current's.
    The next trial comes `every` tokens later. At the full count, each trial that loses doubles that gap (up to
    `max_every`): a trial on a quiet machine costs a few slower tokens, and a quiet machine tends to stay quiet.
    Below the full count the gap stays `every`, so a machine that became quiet again gets its threads back soon.
    Tokens that suddenly take `slowdown` times the best time seen at this count (another program started) bring
    the next trial forward to now.
    """

    max_threads: int
    window: int = 4
    every: int = 32  # single-token steps (a JSON answer of ~90 tokens has ~40: the grammar forces the rest)
    max_every: int = 128  # ~3 answers: how long a newly busy machine may wait to be noticed
    margin: float = 0.85
    slowdown: float = 1.5
    current: int = 0
    _times: dict[int, list[float]] = field(default_factory=dict)
    _best: dict[int, float] = field(default_factory=dict)  # lowest window median seen per count
    _gap: int = 0
    _since_trial: int = -1  # set in __post_init__: the first trial comes after one window
    _trial: int | None = None
    _down: bool = True  # which neighbour the next trial tries first

    def __post_init__(self) -> None:
        if self.max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self.current = self.current or self.max_threads
        self._gap = self.every
        if self._since_trial < 0:
            self._since_trial = self.every

    def next_threads(self) -> int:
        """The thread count for the next single-token step."""
        if (
            self._trial is None
            and self.max_threads > 1
            and len(self._times.get(self.current, [])) >= self.window
            and self._since_trial >= self._gap
        ):
            self._trial = self._neighbour()
            self._times[self._trial] = []
        return self._trial if self._trial is not None else self.current

    def record(self, threads: int, seconds: float) -> None:
        """The time one single-token step took with `threads`."""
        times = self._times.setdefault(threads, [])
        times.append(seconds)
        del times[: -self.window]  # only the recent ones count: conditions change
        if self._trial is None:
            self._since_trial += 1
            if len(times) >= self.window:
                med = statistics.median(times)
                best = self._best.get(threads)
                if best is None or med < best:
                    self._best[threads] = med
                elif med > self.slowdown * best:
                    self._since_trial = max(self._since_trial, self._gap)
            return
        if threads != self._trial or len(times) < self.window:
            return
        if statistics.median(times) < self.margin * statistics.median(self._times[self.current]):
            self.current = self._trial
            self._times = {self.current: times}
            self._gap = self.every
        else:
            # the current count stays: its present speed is the one to compare with from now on
            self._best[self.current] = statistics.median(self._times[self.current])
            self._gap = min(2 * self._gap, self.max_every) if self.current == self.max_threads else self.every
        self._trial = None
        self._since_trial = 0
        self._down = not self._down

    def _neighbour(self) -> int:
        down, up = max(1, self.current // 2), min(self.max_threads, self.current * 2)
        if down == self.current:
            return up
        if up == self.current:
            return down
        return down if self._down else up
