"""Delivers the outbox: each sink's messages in order, backing off while a sink is down; one thread, its own store."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loupe.floor.outputs.base import OutputError, Sink
from loupe.store.outbox import Outbox
from loupe.store.sqlite import Store

log = logging.getLogger("loupe.floor.outputs")


@dataclass(frozen=True)
class SinkHealth:
    """How one sink is doing: what is still owed, and the last error (None once it delivers again)."""

    name: str
    destination: str
    pending: int
    sent: int
    dropped: int
    last_error: str | None


class Delivery:
    """`deliver_once()` sends what is due; `start()` runs it on a thread, woken by `wake()` or the next retry time."""

    def __init__(
        self, db_path: str | Path, sinks: Sequence[Sink], *, max_backoff_s: float = 30.0, base_backoff_s: float = 0.5
    ) -> None:
        self.db_path = Path(db_path)
        self.sinks = {s.name: s for s in sinks}
        self.max_backoff_s, self.base_backoff_s = max_backoff_s, base_backoff_s
        self.errors: dict[str, str | None] = dict.fromkeys(self.sinks)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def deliver_once(self, store: Store, *, ignore_backoff: bool = False) -> int:
        """Send every due message, sink by sink, stopping a sink at its first failure; returns how many went."""
        outbox = Outbox(store)
        sent = 0
        with self._lock:
            for name, sink in self.sinks.items():
                while not self._stop.is_set():
                    entry = outbox.head(name)
                    if entry is None or (not ignore_backoff and entry.next_at > time.time()):
                        break
                    try:
                        try:
                            sink.send(entry.payload)
                        except OutputError:
                            raise
                        except Exception as exc:  # a sink's own bug or a library error: this sink's failure alone
                            raise OutputError(f"{name}: {type(exc).__name__}: {exc}") from None
                    except OutputError as exc:
                        delay = min(self.max_backoff_s, self.base_backoff_s * 2**entry.attempts)
                        outbox.mark_failed(entry.id, str(exc), delay)
                        if self.errors.get(name) != str(exc):
                            log.warning(
                                "%s; %d message(s) kept, retrying in %.1f s",
                                exc,
                                outbox.counts().get(name, {}).get("pending", 0),
                                delay,
                            )
                        self.errors[name] = str(exc)
                        break
                    outbox.mark_sent(entry.id)
                    self.errors[name] = None
                    sent += 1
        return sent

    def next_due(self, store: Store) -> float | None:
        """Seconds until the earliest pending message may be tried (0 when one is due now), None when none waits."""
        outbox = Outbox(store)
        heads = [e for e in (outbox.head(n) for n in self.sinks) if e is not None]
        return max(0.0, min(e.next_at for e in heads) - time.time()) if heads else None

    def health(self, store: Store) -> list[SinkHealth]:
        """Per sink: pending / sent / dropped counts and the last error."""
        counts = Outbox(store).counts()
        return [
            SinkHealth(
                n,
                s.destination,
                **counts.get(n, {"pending": 0, "sent": 0, "dropped": 0}),
                last_error=self.errors.get(n),
            )
            for n, s in self.sinks.items()
        ]

    # -- the background thread ----------------------------------------------------------------------
    def start(self) -> None:
        """Deliver on a thread until `stop()`."""
        self._thread = threading.Thread(target=self._main, name="loupe-outputs", daemon=False)
        self._thread.start()

    def wake(self) -> None:
        """Something was queued: try now."""
        self._wake.set()

    def _open_store(self) -> Store | None:
        """The store, retried with backoff while it cannot be opened (the thread must never die of it)."""
        delay = 0.1
        while not self._stop.is_set():
            try:
                return Store(self.db_path)
            except Exception as exc:
                log.warning("outputs: cannot open the store yet: %s", exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        return None

    def stop(self, timeout: float | None = 10.0) -> None:
        """End the thread (what is still pending stays in the store for next time) and close the sinks."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for sink in self.sinks.values():
            sink.close()

    def _main(self) -> None:
        store = self._open_store()
        if store is None:  # stopped before the store could be opened
            return
        try:
            while not self._stop.is_set():
                try:
                    self.deliver_once(store)
                    due = self.next_due(store)
                except Exception as exc:  # a store hiccup: log it and try again shortly, never die
                    log.warning("outputs: %s", exc)
                    due = 1.0
                self._wake.wait(1.0 if due is None else min(max(due, 0.05), 1.0))
                self._wake.clear()
        finally:
            store.close()
