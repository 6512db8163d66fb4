"""The review queue: results a person should look at, lowest confidence first, and their decisions."""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from typing import Any

from loupe.core.schema.validate import validation_errors
from loupe.core.types import Status
from loupe.store.records import JobRecord, ReviewRecord, StoredResult
from loupe.store.sqlite import Store, StoreError


class ReviewError(StoreError):
    """A review that cannot be stored (e.g. edited data that does not match the task's schema)."""


def needs_review(stored: StoredResult, threshold: float) -> bool:
    """Not ok, some field's confidence under the task's review threshold, or escalated to a person."""
    low = stored.result.min_confidence
    sent_to_review = (
        bool(stored.escalation)
        and isinstance(stored.escalation[-1], dict)
        and stored.escalation[-1].get("step") == "review"
    )  # the ladder (e.g. budget spent) handed it to a person
    return stored.result.status is not Status.OK or (low is not None and low < threshold) or sent_to_review


def for_review(job: JobRecord) -> bool:
    """Whether a job's results belong in the review queue: evaluation runs are compared with labels, not reviewed."""
    return "eval" not in job.launch


def _order(stored: StoredResult) -> tuple[float, int]:
    low = stored.result.min_confidence
    return (-1.0 if low is None else low, stored.id)  # no confidence at all (errors) comes first


def current_user() -> str:
    """Who is reviewing (the login name), for the record."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


@dataclass(frozen=True)
class ReviewQueue:
    """Review operations over one store; what the desktop app's review panel calls."""

    store: Store

    def pending(self, job_id: int | None = None) -> list[StoredResult]:
        """Unreviewed results of a job (the latest job when None) that need a person, lowest confidence first.

        The latest job means the latest one that is not an evaluation run (`loupe eval` jobs are never reviewed)."""
        job = self.store.job(job_id) if job_id is not None else self.latest_job()
        threshold = job.task.options.review_threshold
        queue = [s for s in self.store.results(job.id) if s.review is None and needs_review(s, threshold)]
        return sorted(queue, key=_order)

    def latest_job(self) -> JobRecord:
        """The newest job whose results a person reviews (evaluation runs skipped)."""
        jobs = [j for j in self.store.jobs() if for_review(j)]
        return max(jobs, key=lambda j: j.id) if jobs else self.store.latest_job()

    def accept(self, result_id: int, *, note: str = "", who: str | None = None) -> ReviewRecord:
        """The model's answer is right as it is."""
        stored = self.store.result(result_id)
        if stored.result.data is None:
            raise ReviewError(
                f"result {result_id} has no data to accept ({stored.result.status.value}); "
                "edit it with the right data or reject it"
            )
        return self.store.add_review(result_id, "accept", note=note, who=who or current_user())

    def edit(self, result_id: int, data: Any, *, note: str = "", who: str | None = None) -> ReviewRecord:
        """Store corrected data, refused unless it matches the job's task schema."""
        stored = self.store.result(result_id)
        task = self.store.job(stored.job_id).task
        problems = validation_errors(task.schema, data, formats=task.options.format)
        if problems:
            raise ReviewError(f"edit of result {result_id} refused: does not match the schema: {'; '.join(problems)}")
        return self.store.add_review(result_id, "edit", data=data, note=note, who=who or current_user())

    def edit_json(self, result_id: int, text: str, *, note: str = "", who: str | None = None) -> ReviewRecord:
        """Like edit, from JSON text (what the CLI and a text box hand over)."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ReviewError(f"edit of result {result_id} refused: not JSON: {exc}") from None
        return self.edit(result_id, data, note=note, who=who)

    def reject(self, result_id: int, *, note: str = "", who: str | None = None) -> ReviewRecord:
        """The answer is wrong and not worth correcting; it stays out of the labelled set."""
        return self.store.add_review(result_id, "reject", note=note, who=who or current_user())

    def labelled(self, job_id: int | None = None) -> list[StoredResult]:
        """Accepted and edited results (of one job, or of every job when None): the labelled set."""
        return [s for s in self.store.results(job_id) if s.review is not None and s.review.decision != "reject"]
