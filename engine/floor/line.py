"""The station loop: take each capture from a source, judge it (store first), queue the line outputs, move it on.

It survives model, store and source trouble, and picks up where it stopped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loupe.api import AnalyzeRequest, Engine
from loupe.batch import file_identity
from loupe.core.tasks import Task
from loupe.core.types import Result, Status
from loupe.core.verdict import Judgement, Rules, judge
from loupe.floor.outputs.config import OutputsConfig
from loupe.floor.outputs.delivery import Delivery
from loupe.floor.sources.base import Backoff, Capture, Source, SourceHealth, where_now
from loupe.store.outbox import Message, Outbox
from loupe.store.records import cache_key, digest, now, task_key
from loupe.store.sqlite import Store

log = logging.getLogger("loupe.floor.line")


@dataclass(frozen=True)
class LineOutcome:
    """One judged image: where it is now, its stored result, the verdict, and whether the store answered it."""

    image: str
    result_id: int
    result: Result
    judgement: Judgement
    cached: bool
    at: str


class LineEvents(Protocol):
    """What the line reports, from its own thread (the kiosk's bridge turns these into Qt signals)."""

    def model_state(self, state: str, detail: str) -> None: ...  # "loading" | "ready" | "failed"
    def source_state(self, health: SourceHealth) -> None: ...
    def outcome(self, outcome: LineOutcome) -> None: ...
    def problem(self, message: str) -> None: ...  # shown in place; the line carries on


class RecordingEvents:
    """LineEvents that keep everything (the CLI prints from it; tests read it)."""

    def __init__(self, on_outcome: Callable[[LineOutcome], None] | None = None) -> None:
        self.models: list[tuple[str, str]] = []
        self.sources: list[SourceHealth] = []
        self.outcomes: list[LineOutcome] = []
        self.problems: list[str] = []
        self.on_outcome = on_outcome

    def model_state(self, state: str, detail: str) -> None:
        self.models.append((state, detail))

    def source_state(self, health: SourceHealth) -> None:
        self.sources.append(health)

    def outcome(self, outcome: LineOutcome) -> None:
        self.outcomes.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def problem(self, message: str) -> None:
        self.problems.append(message)


def line_job_key(source: str, task: Task, model: str) -> str:
    """One job per (source, task, model): a restart of the same line continues it."""
    return digest("line", source, task_key(task), model)


def message(task: Task, outcome: LineOutcome) -> dict[str, Any]:
    """The verdict message every line output carries."""
    r = outcome.result
    return {
        "verdict": outcome.judgement.verdict.value,
        "reason": outcome.judgement.reason,
        "task": task.name,
        "image": outcome.image,
        "result_id": outcome.result_id,
        "status": r.status.value,
        "min_confidence": r.min_confidence,
        "data": r.data,
        "model": r.model,
        "at": outcome.at,
        "boxes": [
            {"label": b.label, "box_2d": list(b.box_2d), "pixels": list(b.pixels), "confidence": b.confidence}
            for b in r.boxes
        ],
    }


class Line:
    """Source -> engine -> store -> verdict -> outbox -> source.finish, one capture at a time on one thread."""

    def __init__(
        self,
        *,
        source: Source,
        task: Task,
        rules: Rules,
        outputs: OutputsConfig,
        db_path: str | Path,
        load: Callable[[], Engine],
        model: str,
        events: LineEvents,
        delivery: Delivery | None = None,
        settings: dict[str, Any] | None = None,
        retry_model: bool = True,
    ) -> None:
        self.source, self.task, self.db_path, self.load, self.model = source, task, Path(db_path), load, model
        self.events, self.delivery = events, delivery
        self.settings = settings or {"source": "line"}
        self.retry_model = retry_model  # the kiosk keeps trying; `loupe watch` gives up and says why
        self.rules, self.outputs = rules, outputs  # the task file's `verdict` and `outputs`, parsed by the loader
        self.stop_event = threading.Event()
        self.engine: Engine | None = None
        self.job_id: int | None = None
        self._thread: threading.Thread | None = None
        self._backoff = Backoff()

    # -- running ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Run on a thread named loupe-line until `stop()`."""
        self._thread = threading.Thread(target=self.run, name="loupe-line", daemon=False)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Finish the image in hand, then end; True when the thread has ended."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def run(self) -> None:
        """Open the store and the job, load the model (retrying), then judge captures until stopped."""
        store = self._open_store()
        if store is None:
            return
        try:
            self.job_id = self.open_job(store)
            if not self._load_model():
                return
            last_health: SourceHealth | None = None
            while not self.stop_event.is_set():
                capture = self.source.next(0.25)
                health = self.source.health()
                if health != last_health:
                    self.events.source_state(health)
                    last_health = health
                if capture is not None:
                    self._process_until_done(store, capture)
        finally:
            if self.job_id is not None:
                store.set_state(self.job_id, "interrupted")
            store.close()
            self.source.close()
            if self.engine is not None:
                self.engine.close()

    def _open_store(self) -> Store | None:
        while not self.stop_event.is_set():
            try:
                return Store(self.db_path)
            except Exception as exc:  # shown in place; the kiosk keeps trying
                delay = self._backoff.next_delay()
                self.events.problem(f"the results store cannot be used: {exc}; retrying in {delay:g} s")
                self.stop_event.wait(delay)
        return None

    def _load_model(self) -> bool:
        backoff = Backoff(first=2.0, cap=60.0)
        while not self.stop_event.is_set():
            self.events.model_state("loading", self.model)
            try:
                self.engine = self.load()
            except Exception as exc:  # a missing or broken model file: say so, try again later
                if not self.retry_model:
                    self.events.model_state("failed", str(exc))
                    return False
                delay = backoff.next_delay()
                self.events.model_state("failed", f"{type(exc).__name__}: {exc}; retrying in {delay:g} s")
                self.stop_event.wait(delay)
                continue
            self.events.model_state("ready", self.model)
            return True
        return False

    def _process_until_done(self, store: Store, capture: Capture) -> None:
        backoff = Backoff()
        while not self.stop_event.is_set():
            try:
                self.process(store, capture)
                return
            except Exception as exc:  # e.g. the store's disk is full: keep the file, say so, retry
                delay = backoff.next_delay()
                log.warning("%s: %s", capture.path, exc)
                self.events.problem(f"{Path(capture.path).name}: {type(exc).__name__}: {exc}; retrying in {delay:g} s")
                self.stop_event.wait(delay)

    # -- one capture -------------------------------------------------------------------------------------
    def open_job(self, store: Store) -> int:
        """The line's unfinished job (a restart continues it) or a new one."""
        key = line_job_key(self.source.name, self.task, self.model)
        job = store.unfinished_job(key)
        if job is None:
            job = store.create_job(
                key=key,
                task=self.task,
                model=self.model,
                settings=self.settings,
                launch={"line": self.source.name},
                paths=[],
            )
        store.set_state(job.id, "running")
        return job.id

    def process(self, store: Store, capture: Capture) -> LineOutcome | None:
        """Judge one capture; every step is committed before the next, so a crash anywhere repeats no output."""
        assert self.job_id is not None and self.engine is not None
        ident = file_identity(capture.path)
        if ident is None:
            self.events.problem(f"{capture.path}: gone before it could be read")
            self.source.finish(capture)  # let the source forget it (a new file of that name is a new capture)
            return None
        sha, size = ident
        job = store.job(self.job_id)
        key = cache_key(sha, job.task_key, job.model, job.settings_key)
        item_path, done_id = self._item_path(store, capture.path, sha)
        cached = True
        if done_id is not None:  # judged before a crash, but not moved on: do not judge (or announce) it twice
            result_id, result = done_id, store.result(done_id).result
        else:
            store.add_items(self.job_id, [item_path])
            item_id = self._item_id(store, item_path)
            source_id = store.cached_result_id(key)
            if source_id is not None:
                result_id, result = store.copy_result(
                    item_id, source_id, path=capture.path, sha256=sha, size=size, cache_key=key
                )
            else:
                cached = False
                # stopping the station stops the model too (llama.cpp between graph nodes, or at the next token)
                result = self.engine.analyze(AnalyzeRequest((capture.path,), self.task), cancel=self.stop_event)
                if result.error == "cancelled" and self.stop_event.is_set():
                    return None  # neither stored nor finished: the next start judges this capture
                good = result.status is not Status.ERROR
                result_id = store.save_result(item_id, result, sha256=sha, size=size, cache_key=key if good else None)
        judgement = judge(self.rules, result, review_threshold=self.task.options.review_threshold)
        outcome = LineOutcome(self.source.final_path(capture), result_id, result, judgement, cached, now())
        outbox = Outbox(store, max_pending=self.outputs.max_pending)
        if self.delivery is not None and judgement.verdict in self.outputs.on and not outbox.has_result(result_id):
            payload = message(self.task, outcome)
            dropped = outbox.put(
                [Message(s.name, s.destination, payload) for s in self.delivery.sinks.values()], result_id=result_id
            )
            if dropped:
                self.events.problem(f"the output queue is full: {dropped} oldest message(s) dropped")
        final = self.source.finish(capture)
        if self.delivery is not None:
            self.delivery.wake()  # after the move: a file drop writes next to where the image is now
        outcome = LineOutcome(final, result_id, result, judgement, cached, outcome.at)
        self.events.outcome(outcome)
        return outcome

    def _item_path(self, store: Store, path: str, sha: str) -> tuple[str, int | None]:
        """The item path for these bytes, and the result id when this very file was judged already."""
        row = store.conn.execute(
            "SELECT i.sha256, r.id FROM items i LEFT JOIN results r ON r.item_id = i.id WHERE i.job_id = ? AND"
            " i.path = ?",
            (self.job_id, path),
        ).fetchone()
        if row is None or row[1] is None:
            return path, None
        if row[0] == sha:
            return path, int(row[1])
        return f"{path}#{sha[:12]}", None  # a new file under a name used before

    def _item_id(self, store: Store, path: str) -> int:
        return int(
            store.conn.execute("SELECT id FROM items WHERE job_id = ? AND path = ?", (self.job_id, path)).fetchone()[0]
        )


def recent(
    store: Store, job_id: int, task: Task, rules: Rules, *, limit: int = 12, since: str = ""
) -> tuple[list[LineOutcome], dict[str, int]]:
    """What the kiosk shows after a restart: the last `limit` outcomes (newest first) and verdict counts since
    `since` (an ISO timestamp: the shift's start)."""
    counts = {"PASS": 0, "FAIL": 0, "REVIEW": 0}
    last: list[LineOutcome] = []
    for stored in store.results(job_id):
        j = judge(rules, stored.result, review_threshold=task.options.review_threshold)
        if stored.created >= since:
            counts[j.verdict.value] += 1
        image = where_now(stored.path.split("#")[0])
        last.append(LineOutcome(image, stored.id, stored.result, j, stored.cached_from is not None, stored.created))
    return last[::-1][:limit], counts
