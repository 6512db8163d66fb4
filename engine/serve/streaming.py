"""Chat generations watched from the event loop: tokens streamed as Server-Sent Events, work canceled when the
client goes away (streaming or not), and each canceled request recorded in the server log."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from loupe.backends.base import Generation
from loupe.core.confidence import TokenStep
from loupe.serve import chat, tools
from loupe.serve import schemas as s
from loupe.serve.errors import ApiError
from loupe.serve.worker import Workers
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

# a child of uvicorn's server log: canceled requests show up beside the access log, at the server's log level
log = logging.getLogger("uvicorn.error.loupe")

Token = tuple[bytes, TokenStep]
T = TypeVar("T")


@dataclass
class Job:
    """One chat generation on the model lane; its tokens (when streamed) arrive on `tokens`, then None."""

    id: str
    plan: chat.ChatPlan
    future: asyncio.Future[Generation]
    cancel: threading.Event
    tokens: asyncio.Queue[Token | None]
    client_left: bool = False

    def abandon(self) -> None:
        """The client is gone: stop the model within a token and log the request as canceled when it ends."""
        if self.client_left or self.future.done():
            return
        self.client_left = True
        self.cancel.set()
        self.future.add_done_callback(self._log_canceled)

    def _log_canceled(self, future: asyncio.Future[Generation]) -> None:
        gen = None if future.cancelled() or future.exception() is not None else future.result()
        n = len(gen.steps) if gen is not None else 0
        log.info(
            "%s canceled: the client disconnected; the model stopped after %d of max_tokens=%d tokens",
            self.id,
            n,
            self.plan.max_tokens,
            extra={
                "loupe_request": self.id,
                "completion_tokens": n,
                "max_tokens": self.plan.max_tokens,
                "stop": gen.stop if gen is not None else None,
            },
        )


def start(workers: Workers, plan: chat.ChatPlan, *, stream: bool) -> Job:
    """Queue the plan on the model lane (call from the event loop); streamed tokens are passed back to it."""
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    queue: asyncio.Queue[Token | None] = asyncio.Queue()

    def on_token(piece: bytes, step: TokenStep) -> None:  # on the model thread
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (piece, step))
        except RuntimeError:  # the server stopped (its loop is closed): nobody is listening any more
            cancel.set()

    future = asyncio.ensure_future(
        workers.model_lane.call(
            chat.generate, workers.engine, plan, cancel=cancel, on_token=on_token if stream else None
        )
    )
    future.add_done_callback(lambda _: queue.put_nowait(None))  # after every token: they were queued first
    return Job(f"chatcmpl-{uuid.uuid4().hex}", plan, future, cancel, queue)


async def until_disconnect(request: Request) -> None:
    """Return once the client has gone (the body is read, so the next ASGI message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class ClientLeft(Exception):
    """The client disconnected before its answer was ready (its generation was canceled)."""


async def _unless_client_leaves(request: Request, job: Job, awaitable: Awaitable[T]) -> T:
    """`awaitable`'s result; if the client disconnects first, abandon the job and raise ClientLeft."""
    task = asyncio.ensure_future(awaitable)
    watch = asyncio.ensure_future(until_disconnect(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            job.abandon()
    if job.client_left:
        raise ClientLeft(job.id)
    return task.result()


async def result(request: Request, job: Job) -> Generation:
    """The finished generation, unless the client leaves first (ClientLeft; the model stops within a token)."""
    return await _unless_client_leaves(request, job, asyncio.shield(job.future))


async def first_token(request: Request, job: Job) -> Token | None:
    """Wait for the first streamed token (None: the generation ended without one; its error is raised here)."""
    first = await _unless_client_leaves(request, job, job.tokens.get())
    if first is None:
        job.future.result()  # a failure before any token is still an ordinary JSON error
    return first


class EventStream(StreamingResponse):
    """text/event-stream of `events`; when it ends early (the client left) the job is abandoned.

    Starlette stops the body at its next await when the client disconnects, possibly before it started.
    """

    def __init__(self, body: AsyncIterator[str], job: Job) -> None:
        super().__init__(
            body, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.abandon()  # nothing if the generation had ended


def _chunk(
    job: Job, model_id: str, created: int, *, usage: bool, loupe: s.LoupeExtras | None = None, **choice: Any
) -> dict[str, Any]:
    chunk = s.ChatCompletionChunk(
        id=job.id,
        created=created,
        model=model_id,
        system_fingerprint=chat.FINGERPRINT,
        choices=[s.ChunkChoice(**choice)],
        loupe=loupe,
    )
    leave_out = ({"usage"} if not usage else set()) | ({"loupe"} if loupe is None else set())
    body = chunk.model_dump(mode="json", exclude=leave_out)
    for c in body["choices"]:
        c["delta"] = chunk.choices[0].delta.model_dump(mode="json", exclude_none=True)
    return body


def _call_delta(job: Job, arguments: str, *, first: bool, name: str | None = None) -> s.Delta:
    """A delta that carries a piece of the tool call's arguments (its id, type and name too when `first`)."""
    function = s.FunctionCallDelta(name=name, arguments=arguments)
    if first:
        call = s.ToolCallDelta(id=chat.call_id(job.id), type="function", function=function)
        return s.Delta(role="assistant", tool_calls=[call])
    return s.Delta(tool_calls=[s.ToolCallDelta(function=function)])


def _data(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _error_event(err: ApiError) -> str:
    return f"event: error\ndata: {json.dumps(err.body(), ensure_ascii=False)}\n\n"


async def events(req: s.ChatRequest, job: Job, first: Token | None, model_id: str, t0: float) -> AsyncIterator[str]:
    """The SSE body: a role chunk (a single-function call: with the call's id and name), a chunk per token (of the
    content, or of the call's arguments; a call among several functions comes whole at the end), the finish chunk,
    the usage chunk if asked, [DONE]. Text that may begin a stop sequence is held back until it cannot."""
    created = int(time.time())
    usage = bool(req.stream_options and req.stream_options.include_usage)
    utf8 = tools.utf8_decoder()  # a token may end inside a character
    plan = job.plan
    single = plan.tool is not None and not plan.tool.enveloped
    whole = plan.tool is not None and plan.tool.enveloped  # the function's name is known only at the end
    scanner = tools.StopScanner(plan.stop) if plan.stop else None

    def piece(text: str, logprobs: s.ChoiceLogprobs | None = None) -> dict[str, Any]:
        delta = _call_delta(job, text, first=False) if single else s.Delta(content=text)
        return _chunk(job, model_id, created, usage=usage, delta=delta, logprobs=logprobs)

    if single:
        assert plan.tool is not None
        opening = _call_delta(job, "", first=True, name=plan.tool.names[0])
    else:
        opening = s.Delta(role="assistant", content=None if whole else "")
    yield _data(_chunk(job, model_id, created, usage=usage, delta=opening))
    item = first
    while item is not None:
        raw, step = item
        text = utf8.decode(raw)
        if scanner is not None:
            text = scanner.feed(text)
        logprobs = s.ChoiceLogprobs(content=[chat.token_logprob(raw, step.prob)]) if req.logprobs else None
        if not whole and (text or logprobs) and not (scanner is not None and scanner.hit and not text):
            yield _data(piece(text, logprobs))
        await asyncio.sleep(0)  # let a disconnect be noticed even while tokens are already queued
        item = await job.tokens.get()
    try:
        gen = job.future.result()
    except ApiError as exc:
        yield _error_event(exc)
        return
    except Exception as exc:  # the stream has begun: report the failure in it, then close
        log.exception("%s failed after streaming began", job.id)
        yield _error_event(
            ApiError(500, f"internal error: {type(exc).__name__}", type_="server_error", code="internal_error")
        )
        return
    done = chat.completion(req, plan, gen, model_id, (time.perf_counter() - t0) * 1000, job.id)
    rest = utf8.decode(b"", final=True)
    if scanner is not None:
        rest = scanner.feed(rest) + scanner.flush()
    if whole:
        msg = done.choices[0].message
        if msg.tool_calls:
            call = msg.tool_calls[0].function
            yield _data(
                _chunk(
                    job,
                    model_id,
                    created,
                    usage=usage,
                    delta=_call_delta(job, call.arguments, first=True, name=call.name),
                )
            )
        else:
            rest = msg.content or ""
    elif rest and single:
        yield _data(piece(rest))
        rest = ""
    yield _data(
        _chunk(
            job,
            model_id,
            created,
            usage=usage,
            delta=s.Delta(content=rest or None),
            finish_reason=done.choices[0].finish_reason,
            loupe=done.loupe,
        )
    )
    if usage:
        yield _data(
            {
                **_chunk(job, model_id, created, usage=True, delta=s.Delta()),
                "choices": [],
                "usage": done.usage.model_dump(mode="json"),
            }
        )
    yield "data: [DONE]\n\n"
