"""One analysis: prepare images, generate under the constraint, parse, validate (bounded retry), score."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from loupe.backends.base import Backend, Generation, GenerationRequest, PreparedImage
from loupe.core.confidence import capped, field_confidence
from loupe.core.constrain.base import REFUSAL_PREFIX, Constraint
from loupe.core.constrain.runaway import Limits
from loupe.core.errors import LoupeError
from loupe.core.images.boxes import find_boxes, flag_invalid
from loupe.core.images.load import LoadedImage
from loupe.core.images.resize import fit, image_tokens_for, max_side_for
from loupe.core.prompt import image_id, user_text
from loupe.core.schema.spans import leaf_spans
from loupe.core.schema.validate import validation_errors
from loupe.core.tasks import Task
from loupe.core.types import Box, ImageEmbedding, ImageInfo, Result, Status, Timings, Tokens

RETRY_TEMPERATURE = 0.7
Event = Callable[[str, dict], None]


@dataclass(frozen=True)
class Attempt:
    """What one attempt amounted to, before deciding whether to retry."""

    status: Status
    generation: Generation
    data: object = None
    error: str | None = None
    parsed: bool = False  # `data` holds the parsed output (which may itself be JSON null)


def prepare(images: Sequence[LoadedImage], detail: str | int) -> tuple[list[PreparedImage], list[ImageInfo]]:
    """Downscale each upright image for the model and describe it for the result."""
    limit = max_side_for(detail)
    prepared, infos = [], []
    for i, img in enumerate(images):
        small, note = fit(img.image, limit)
        iid = image_id(i)
        prepared.append(PreparedImage(iid, small))
        transforms = img.transforms + ((note,) if note else ())
        w, h = img.size
        infos.append(ImageInfo(iid, img.path, img.sha256, w, h, small.width, small.height, transforms))
    return prepared, infos


def judge(gen: Generation, task: Task, max_tokens: int) -> Attempt:
    """Turn raw output into an outcome: ok, refused, truncated, invalid, or error (canceled)."""
    if gen.stop == "cancelled":
        return Attempt(Status.ERROR, gen, error="cancelled")
    text = gen.text.strip()
    if text.startswith(REFUSAL_PREFIX):
        return Attempt(Status.REFUSED, gen, error=text[len(REFUSAL_PREFIX) :].strip() or "refused")
    if gen.stop == "refusal_unmeant":
        return Attempt(Status.ERROR, gen, error="the model began a refusal it did not mean")
    if gen.stop == "loop" and gen.loop is not None:
        return Attempt(Status.TRUNCATED, gen, error=f"output ran away: {gen.loop.describe()}")
    if gen.stop == "max_tokens":
        return Attempt(Status.TRUNCATED, gen, error=f"output reached max_tokens={max_tokens} before the JSON ended")
    try:
        data = json.loads(gen.text)
    except ValueError as exc:
        return Attempt(Status.INVALID, gen, error=f"output is not JSON: {exc}")
    problems = validation_errors(task.schema, data, formats=task.options.format)
    if problems:
        return Attempt(Status.INVALID, gen, data, "does not match the schema: " + "; ".join(problems), parsed=True)
    return Attempt(Status.OK, gen, data, parsed=True)


def run(
    task: Task,
    images: Sequence[LoadedImage],
    backend: Backend,
    constraint: Constraint,
    *,
    model: str,
    cancel: threading.Event | None = None,
    on_event: Event | None = None,
) -> Result:
    """Analyze `images` (one request, ids img_01...) with `task`. Retries invalid output and runaway loops (a loop
    retried differently, loupe.core.constrain.runaway); a refusal the model did not mean runs once more without the
    refusal branch. A `cancel` set before
    an attempt starts keeps it from the backend (a `cancelled` result without prefill)."""
    t0 = time.perf_counter()
    opts = task.options
    prepared, infos = prepare(images, opts.detail)
    text = user_text(
        task.instructions, task.schema, len(prepared), allow_refusal=opts.allow_refusal, layout=opts.layout
    )
    attempt: Attempt | None = None
    limits = Limits.for_task(task.schema, opts.max_tokens) if opts.runaway_guard else None
    refusal = opts.allow_refusal
    spent: dict[str, float] = {}
    vectors: dict[str, bytes] = {}  # per image id, from whichever attempt got as far as encoding it
    looped = False
    n = budget = 0
    while n <= opts.retries + budget:
        n += 1
        # a retry after a loop decodes as the first attempt did (same prefix) but ends the looping value (runaway)
        hot = n > 1 + budget and not looped
        request = GenerationRequest(
            text=text,
            images=tuple(prepared),
            constraint=constraint,
            schema=task.schema,
            max_tokens=opts.max_tokens,
            temperature=max(opts.temperature, RETRY_TEMPERATURE) if hot else opts.temperature,
            seed=opts.seed + n - 1,
            allow_refusal=refusal,
            image_max_tokens=image_tokens_for(opts.detail),
            limits=limits,
        )
        canceled = cancel is not None and cancel.is_set()  # e.g. its client left while it waited for the model
        gen = Generation(text="", stop="cancelled") if canceled else backend.generate(request, cancel=cancel)
        for stage, ms in gen.timings.items():  # the result's timings are the whole analysis's, every attempt's
            spent[stage] = spent.get(stage, 0.0) + ms
        gen.timings = dict(spent)
        vectors.update(gen.embeddings)
        attempt = judge(gen, task, opts.max_tokens)
        if on_event:
            on_event("attempt", {"n": n, "status": attempt.status.value, "error": attempt.error})
        if gen.stop == "refusal_unmeant" and refusal:  # started "REFUSE:" by drift: once more, without the branch
            refusal, budget = False, budget + 1
            continue
        looped = gen.stop == "loop" and gen.loop is not None and limits is not None
        if looped:
            assert gen.loop is not None and limits is not None
            limits = limits.after_loop(gen.loop)
        elif attempt.status is not Status.INVALID:
            break
    assert attempt is not None
    embeddings = tuple(
        ImageEmbedding(info.id, model, str(opts.detail), vectors[info.id]) for info in infos if vectors.get(info.id)
    )
    result = _result(task, backend, model, infos, attempt, n, (time.perf_counter() - t0) * 1000)
    return replace(result, embeddings=embeddings) if embeddings else result


def _result(
    task: Task,
    backend: Backend,
    model: str,
    infos: list[ImageInfo],
    attempt: Attempt,
    attempts: int,
    total_ms: float,
) -> Result:
    gen = attempt.generation
    confidence: dict[str, float] = {}
    model_confidence: dict[str, float] = {}
    boxes: tuple[Box, ...] = ()
    if attempt.parsed:
        raw = gen.text.encode()
        lead = len(raw) - len(raw.lstrip())
        spans = leaf_spans(raw[lead:].rstrip(), offset=lead)
        confidence = capped(field_confidence(gen.steps, spans), spans, gen.doubts)
        model_confidence = capped(field_confidence(gen.steps, spans, unconstrained=True), spans, gen.doubts)
        sizes = {info.id: (info.width, info.height) for info in infos}
        confidence = flag_invalid(confidence, attempt.data, sizes)  # a box with no area: unsure, to review
        boxes = find_boxes(attempt.data, sizes, confidence)
    if gen.image_steps:
        infos = [replace(i, transforms=i.transforms + gen.image_steps.get(i.id, ())) for i in infos]
    t = gen.timings
    return Result(
        status=attempt.status,
        task=task.name,
        model=model,
        backend=backend.name,
        images=tuple(infos),
        data=attempt.data if attempt.parsed else None,
        raw=gen.text,
        confidence=confidence,
        boxes=boxes,
        timings=Timings(
            preprocess_ms=round(t.get("preprocess_ms", 0.0), 2),
            encode_ms=round(t.get("encode_ms", 0.0), 2),
            prefill_ms=round(t.get("prefill_ms", 0.0), 2),
            decode_ms=round(t.get("decode_ms", 0.0), 2),
            constraint_ms=round(t.get("constraint_ms", 0.0), 2),
            total_ms=round(total_ms, 2),
        ),
        tokens=Tokens(prompt=gen.prompt_tokens, image=gen.image_tokens, completion=len(gen.steps)),
        attempts=attempts,
        error=attempt.error,
        model_confidence=model_confidence,
    )


def error_result(task: Task, backend_name: str, model: str, err: LoupeError | str, paths: Sequence[str]) -> Result:
    """A Result with status `error` for input that never reached the model (e.g. a bad image)."""
    infos = tuple(ImageInfo(image_id(i), p, "", 0, 0, 0, 0) for i, p in enumerate(paths))
    return Result(Status.ERROR, task.name, model, backend_name, images=infos, error=str(err))
