"""The seam every image source plugs into (Source), its value types, a fake beside it, and the backoff they share."""

from __future__ import annotations

import os
import queue
from dataclasses import dataclass, field
from typing import Protocol

PROCESSED = "processed"  # where a watched folder's judged files go


def where_now(path: str) -> str:
    """Where an image judged at `path` is now: still there, or moved into the folder's processed/."""
    if os.path.exists(path):
        return path
    moved = os.path.join(os.path.dirname(path), PROCESSED, os.path.basename(path))
    return moved if os.path.exists(moved) else path


@dataclass(frozen=True)
class Capture:
    """One image ready to analyze: a complete file on disk, and where it came from."""

    path: str
    origin: str  # the watched folder, or the camera it was grabbed from


@dataclass(frozen=True)
class SourceHealth:
    """How a source is doing, in words for the kiosk: ok, waiting, reconnecting, ended."""

    state: str  # "ok" | "waiting" | "reconnecting" | "ended"
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True while the source can deliver images."""
        return self.state in ("ok", "waiting")


class Source(Protocol):
    """A stream of captures. `next` blocks up to `timeout` seconds (None when nothing came); `finish` is called once
    the capture's result is stored (a watched folder moves or marks the file there)."""

    name: str

    def next(self, timeout: float) -> Capture | None: ...
    def final_path(self, capture: Capture) -> str: ...
    def finish(self, capture: Capture) -> str: ...
    def health(self) -> SourceHealth: ...
    def close(self) -> None: ...


@dataclass
class Backoff:
    """Waits that double after each failure up to a cap, and reset after a success."""

    first: float = 0.5
    cap: float = 30.0
    failures: int = 0

    def next_delay(self) -> float:
        """The wait before the next try (and count this failure)."""
        delay = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        """It worked: start again from the first delay."""
        self.failures = 0


@dataclass
class FakeSource:
    """Hands out the paths put into it, in order; remembers what was finished."""

    name: str = "fake"
    captures: queue.Queue[str] = field(default_factory=queue.Queue)
    finished: list[str] = field(default_factory=list)
    state: SourceHealth = field(default_factory=lambda: SourceHealth("ok"))
    closed: bool = False

    def put(self, path: str) -> None:
        """Queue an image."""
        self.captures.put(path)

    def next(self, timeout: float) -> Capture | None:
        try:
            return Capture(self.captures.get(timeout=timeout), self.name)
        except queue.Empty:
            return None

    def final_path(self, capture: Capture) -> str:
        return capture.path

    def finish(self, capture: Capture) -> str:
        self.finished.append(capture.path)
        return capture.path

    def health(self) -> SourceHealth:
        return self.state

    def close(self) -> None:
        self.closed = True
