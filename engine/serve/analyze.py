"""Loupe's own endpoints: analyze one image with a task (stored like a batch result, canceled when its client
leaves) and page the results."""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from loupe.api import AnalyzeRequest
from loupe.core.errors import TaskError
from loupe.core.images.load import LoadedImage
from loupe.core.tasks import Task, builtin_task, load_task_file, task_from_dict
from loupe.core.types import Result
from loupe.serve import schemas as s
from loupe.serve.config import ServeConfig
from loupe.serve.errors import bad_request
from loupe.serve.images import path_not_allowed
from loupe.serve.streaming import ClientLeft, log, until_disconnect
from loupe.serve.worker import Workers
from loupe.store import Store, StoredResult
from loupe.store.index import phash_image
from starlette.requests import Request


@dataclass(frozen=True)
class StoredOutcome:
    """What /v1/analyze returns: the store ids with the result."""

    result_id: int
    job_id: int
    created: str
    result: Result


def task_for(body: s.AnalyzeBody, config: ServeConfig) -> Task:
    """The task named by exactly one of `task`, `task_file`, `schema` (+ `instructions`), with option overrides."""
    given = [
        k for k, v in (("task", body.task), ("task_file", body.task_file), ("schema", body.schema_)) if v is not None
    ]
    if len(given) != 1:
        raise bad_request(
            "give exactly one of `task` (a built-in name), `task_file` (a path), or `schema` with "
            f"`instructions` (got {', '.join(given) or 'none'})",
            param="task",
        )
    if body.instructions is not None and body.schema_ is None:
        raise bad_request("`instructions` go with `schema`; a named task brings its own", param="instructions")
    try:
        if body.task is not None:
            task = builtin_task(body.task)
        elif body.task_file is not None:
            path = config.allowed_path(body.task_file)
            if path is None:
                raise path_not_allowed("task_file")
            task = load_task_file(path)
        else:
            raw: dict[str, Any] = {"schema": body.schema_, "instructions": body.instructions or ""}
            task = task_from_dict(raw, "<request>", default_name="request")
        return task.with_options(**body.options) if body.options else task
    except TaskError as exc:
        param = given[0] if not exc.pointer.startswith("/options") else "options"
        raise bad_request(str(exc), param=param, code="invalid_task") from None
    except TypeError as exc:  # an option name TaskOptions does not take
        raise bad_request(f"bad options: {exc}", param="options", code="invalid_task") from None


def save(store: Store, task: Task, image: LoadedImage, result: Result) -> StoredOutcome:
    """Record the request as a one-item job and commit its result (call on the store thread). A canceled result
    is committed too and its job is `done`: `interrupted` means items left for a resume by the job's key, and a
    serve job (a fresh key per request) is never resumed, so an item left pending would only hide the request."""
    job = store.create_job(
        key=f"serve:{uuid.uuid4().hex}",
        task=task,
        model=result.model,
        settings={"source": "serve"},
        launch={"source": "serve", "endpoint": "/v1/analyze"},
        paths=[image.path],
    )
    item = store.items(job.id)[0]
    # the request's image may be a data URL with no file to hash later: hash the decoded pixels it still holds
    phashes = {info.id: phash_image(image.image) for info in result.images[:1]}
    rid = store.save_result(item.id, result, sha256=image.sha256, size=None, cache_key=None, phashes=phashes)
    store.set_state(job.id, "done")
    stored = store.result(rid)
    return StoredOutcome(rid, job.id, stored.created, result)


async def analyze_and_save(request: Request, workers: Workers, task: Task, image: LoadedImage) -> StoredOutcome:
    """Analyze on the model lane, then store the result. A client that disconnects first cancels the analysis
    (within a token, or before it reaches the model if it was still queued); the engine's `cancelled` result
    (status `error`, error `cancelled`) is stored all the same, so the store shows the request was abandoned,
    the cancellation is logged, and ClientLeft is raised (nobody is left to read the answer)."""
    cancel = threading.Event()
    work = asyncio.ensure_future(
        workers.model_lane.call(workers.engine.analyze, AnalyzeRequest((image,), task), cancel=cancel)
    )
    watch = asyncio.ensure_future(until_disconnect(request))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            cancel.set()  # the client left (or this request is being torn down): stop the model
    result = await work
    outcome = await workers.store_lane.call(lambda: save(workers.store(), task, image, result))
    if cancel.is_set():
        _log_canceled(outcome, task)
        raise ClientLeft(f"analyze result {outcome.result_id}")
    return outcome


def _log_canceled(o: StoredOutcome, task: Task) -> None:
    r, request = o.result, f"analyze result {o.result_id}"
    stop = "cancelled" if r.error == "cancelled" else r.status.value  # it may have finished as the client left
    log.info(
        "%s canceled: the client disconnected; the model stopped after %d of max_tokens=%d tokens; "
        "stored with status %s (%s) in job %d",
        request,
        r.tokens.completion,
        task.options.max_tokens,
        r.status.value,
        r.error or "it had finished",
        o.job_id,
        extra={
            "loupe_request": request,
            "completion_tokens": r.tokens.completion,
            "max_tokens": task.options.max_tokens,
            "stop": stop,
            "result_id": o.result_id,
            "job_id": o.job_id,
        },
    )


def outcome_dict(o: StoredOutcome) -> dict[str, Any]:
    """The Result JSON with its store ids first."""
    return {"id": o.result_id, "job_id": o.job_id, "created": o.created, **o.result.to_dict()}


def stored_dict(r: StoredResult) -> dict[str, Any]:
    """A stored result for GET /v1/results (with its latest review, if any)."""
    review = None if r.review is None else {"decision": r.review.decision, "note": r.review.note, "at": r.review.at}
    return {"id": r.id, "job_id": r.job_id, "created": r.created, **r.result.to_dict(), "review": review}


def page(store: Store, *, offset: int, limit: int, status: str | None) -> s.ResultsPage:
    """Stored results, newest first, `limit` from `offset` (optionally only one status); reads only that page."""
    where, args = (" WHERE status = ?", (status,)) if status is not None else ("", ())
    total = int(store.conn.execute(f"SELECT COUNT(*) FROM results{where}", args).fetchone()[0])
    ids = [
        int(r[0])
        for r in store.conn.execute(
            f"SELECT id FROM results{where} ORDER BY id DESC LIMIT ? OFFSET ?", (*args, limit, offset)
        )
    ]
    nxt = offset + limit if offset + limit < total else None
    return s.ResultsPage(
        data=[s.StoredResultOut(**stored_dict(store.result(i))) for i in ids],
        total=total,
        offset=offset,
        limit=limit,
        next_offset=nxt,
    )


def search(
    store: Store, *, like: int | None, dupes: bool, where: str | None, text: str | None, limit: int | None
) -> s.SearchPage:
    """GET /v1/search on the store thread: the rows `loupe search` prints for the same query."""
    from loupe.search import Filters, SearchError
    from loupe.search import dupes as find_dupes
    from loupe.search import like as find_like
    from loupe.search import text as find_text
    from loupe.search import where as find_where
    from loupe.search.filters import WhereError
    from loupe.search.find import DEFAULT_LIMIT

    if like is not None and dupes:
        raise bad_request("give one of like and dupes", param="like")
    try:
        filters = Filters(where=where or "")
        if like is not None:
            hits = find_like(store, like, limit or DEFAULT_LIMIT, filters=filters)
        elif dupes:
            hits = find_dupes(store, filters=filters, limit=limit)
        elif text:
            hits = find_text(store, text, filters=filters, limit=limit)
        elif where:
            hits = find_where(store, filters=filters, limit=limit)
        else:
            raise bad_request("say what to find: like, dupes, where or text", param="like")
        if (like is not None or dupes) and text:
            keep = {h.result_id for h in find_text(store, text, filters=filters)}
            hits[:] = [h for h in hits if h.result_id in keep]
    except WhereError as exc:
        raise bad_request(str(exc), param="where") from None
    except SearchError as exc:
        raise bad_request(str(exc), param="text" if text and like is None else "like") from None
    return s.SearchPage(data=[s.SearchHit(**h.to_dict()) for h in hits], measure=hits.measure, note=hits.note)
