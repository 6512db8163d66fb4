"""A watched folder (watchdog): hands out images once completely written, moves or marks them once judged.

It rides out the folder (a network share) disappearing and coming back.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from loupe.core.images.files import IMAGE_EXTENSIONS
from loupe.floor.sources.base import PROCESSED, Backoff, Capture, SourceHealth
from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

log = logging.getLogger("loupe.floor.sources")


class _QuietStop(logging.Filter):
    """watchdog logs a harmless race when an observer is stopped mid-read; keep it off the operator's terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_QuietStop())
AFTER = ("move", "mark")
MARK_SUFFIX = ".loupe-done"


@dataclass
class _Candidate:
    size: int
    mtime: float
    since: float  # when (size, mtime) last changed
    wait: str  # "close": inotify saw writes, wait for the writer's close; "settle": wait for quiet; "now": renamed in
    closed: bool = False


class _Handler(FileSystemEventHandler):
    def __init__(self, events: queue.Queue[tuple[str, str]], wake: threading.Event) -> None:
        self.events, self.wake = events, wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        kinds = {
            FileCreatedEvent: "created",
            FileModifiedEvent: "modified",
            FileClosedEvent: "closed",
            FileDeletedEvent: "deleted",
        }
        if isinstance(event, FileMovedEvent):
            self.events.put(("deleted", os.fsdecode(event.src_path)))
            self.events.put(("moved", os.fsdecode(event.dest_path)))
        elif type(event) in kinds:
            self.events.put((kinds[type(event)], os.fsdecode(event.src_path)))
        else:
            return
        self.wake.set()


class WatchSource:
    """Images arriving in one folder (not its subfolders). With inotify (Linux) a file is ready when its writer
    closes it; otherwise (polling, files found by a scan) when its size and mtime have not changed for `settle_s`.
    After judging, `move` puts the file in `processed/`; `mark` leaves it and writes a hidden `.NAME.loupe-done`."""

    def __init__(
        self,
        folder: str | Path,
        *,
        after: str = "move",
        settle_s: float = 1.0,
        poll: bool = False,
        rescan_s: float = 10.0,
        backoff: Backoff | None = None,
    ) -> None:
        if after not in AFTER:
            raise ValueError(f"after must be one of {AFTER}")
        self.folder = Path(folder).absolute()
        self.name = str(self.folder)
        self.after, self.settle_s, self.poll, self.rescan_s = after, settle_s, poll, rescan_s
        self.backoff = backoff or Backoff()
        self._events: queue.Queue[tuple[str, str]] = queue.Queue()
        self._wake = threading.Event()
        self._pending: dict[str, _Candidate] = {}
        self._handed: set[str] = set()
        self._finals: dict[str, str] = {}
        self._observer: BaseObserver | None = None
        self._identity: tuple[int, int] | None = None
        self._retry_at = 0.0
        self._last_scan = 0.0
        self._health = SourceHealth("waiting", "starting")

    # -- the Source protocol -------------------------------------------------------------------------
    def next(self, timeout: float) -> Capture | None:
        """The next completely written image, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self._watching():
                self._drain()
                if time.monotonic() - self._last_scan >= self.rescan_s:
                    self._scan()
                ready = self._ready()
                if ready is not None:
                    self._handed.add(ready)
                    return Capture(ready, self.name)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._wake.wait(min(left, max(0.02, self.settle_s / 4), 0.25))
            self._wake.clear()

    def final_path(self, capture: Capture) -> str:
        """Where the file will be once finished: processed/NAME (NAME-2.jpg ... if taken), or in place when marking."""
        if capture.path in self._finals:
            return self._finals[capture.path]
        src = Path(capture.path)
        final = src
        if self.after == "move":
            final = src.parent / PROCESSED / src.name
            n = 2
            while final.exists() or str(final) in self._finals.values():
                final = src.parent / PROCESSED / f"{src.stem}-{n}{src.suffix}"
                n += 1
        self._finals[capture.path] = str(final)
        return str(final)

    def finish(self, capture: Capture) -> str:
        """Move (or mark) a judged file; returns where it is now. A failure is logged and the file left in place
        (a restart finds it again and the store answers it without re-running the model)."""
        final = self.final_path(capture)
        self._handed.discard(capture.path)
        self._finals.pop(capture.path, None)
        try:
            if self.after == "move":
                Path(final).parent.mkdir(exist_ok=True)
                os.replace(capture.path, final)
                return final
            _marker(Path(capture.path)).touch()
        except OSError as exc:
            log.warning("cannot %s %s: %s", self.after, capture.path, exc)
            return capture.path
        return capture.path

    def health(self) -> SourceHealth:
        """ok while watching, reconnecting while the folder is gone."""
        return self._health

    def close(self) -> None:
        """Stop watching."""
        self._stop_observer()

    # -- watching ------------------------------------------------------------------------------------
    def _watching(self) -> bool:
        """True when the observer runs on the folder as it is now; otherwise (re)start it, backing off."""
        ident = _identity(self.folder)
        if self._observer is not None and ident == self._identity and self._observer.is_alive():
            return True
        if self._observer is not None:
            self._stop_observer()
            log.warning("%s: the folder went away; watching for it to come back", self.folder)
        now = time.monotonic()
        if now < self._retry_at:
            return False
        try:
            if ident is None:
                raise FileNotFoundError(f"{self.folder} is not there")
            observer = PollingObserver(timeout=max(0.1, self.settle_s / 2)) if self.poll else Observer()
            observer.schedule(_Handler(self._events, self._wake), str(self.folder), recursive=False)
            observer.start()
        except OSError as exc:
            delay = self.backoff.next_delay()
            self._retry_at = now + delay
            self._health = SourceHealth(
                "reconnecting", f"{exc}; retrying in {delay:g} s (attempt {self.backoff.failures})"
            )
            if self.backoff.failures == 1:
                log.warning("%s", self._health.detail)
            return False
        if self.backoff.failures:
            log.warning("%s is back; resuming", self.folder)
        self._observer, self._identity = observer, ident
        self.backoff.reset()
        self._health = SourceHealth("ok", f"watching {self.folder}")
        self._scan()
        return True

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(5)

    def _scan(self) -> None:
        """Everything already there (at start, after an outage, and every `rescan_s` as a safety net)."""
        self._last_scan = time.monotonic()
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return
        for entry in entries:
            if entry.is_file() and entry.path not in self._pending and self._wanted(entry.path):
                self._track(entry.path, wait="settle")

    def _drain(self) -> None:
        native = not self.poll
        while True:
            try:
                kind, path = self._events.get_nowait()
            except queue.Empty:
                return
            if kind == "deleted":
                self._pending.pop(path, None)
            elif not self._wanted(path):
                continue
            elif kind == "closed":
                if path in self._pending:
                    self._pending[path].closed = True
            elif kind == "moved":  # renamed within the folder: complete by construction
                self._track(path, wait="now")
            elif path not in self._pending:
                # inotify: an empty new file will be written and closed; one moved in from elsewhere just settles
                self._track(path, wait="close" if native and (kind == "modified" or _size(path) == 0) else "settle")
            elif kind == "modified":
                self._pending[path].closed = False
                if native:
                    self._pending[path].wait = "close"  # someone is writing: wait for their close

    def _wanted(self, path: str) -> bool:
        p = Path(path)
        return (
            p.parent == self.folder
            and not p.name.startswith(".")
            and p.suffix.lower() in IMAGE_EXTENSIONS
            and path not in self._handed
            and not (self.after == "mark" and _marker(p).exists())
        )

    def _track(self, path: str, *, wait: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        self._pending[path] = _Candidate(st.st_size, st.st_mtime, time.monotonic(), wait)

    def _ready(self) -> str | None:
        now = time.monotonic()
        for path, c in list(self._pending.items()):
            try:
                st = os.stat(path)
            except OSError:
                del self._pending[path]
                continue
            if (st.st_size, st.st_mtime) != (c.size, c.mtime) and c.wait != "now":
                c.size, c.mtime, c.since = st.st_size, st.st_mtime, now
                continue
            done = {"close": c.closed, "now": True}.get(c.wait, now - c.since >= self.settle_s)
            if done and st.st_size > 0:
                del self._pending[path]
                return path
        return None


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(folder) else None


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _marker(image: Path) -> Path:
    return image.parent / f".{image.name}{MARK_SUFFIX}"
