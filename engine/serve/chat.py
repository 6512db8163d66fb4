"""OpenAI-style chat completions on the loaded model, decoded under the request's JSON Schema.

Loupe's local decoder always runs under a constraint, so a request must say what shape to produce:
`response_format` `json_schema` (that schema) or `json_object` (any JSON object). A request without
one, or with `text`, is refused with a 400 that says so (plain text generation is not offered).
Messages are flattened into one user turn: system/developer text first, then the conversation, each
image where its content part stands.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from loupe.api import Engine
from loupe.api.pipeline import prepare
from loupe.backends.base import Generation, GenerationRequest, OnToken
from loupe.core.confidence import field_confidence
from loupe.core.constrain.llguidance import relaxation_notes
from loupe.core.errors import BackendError, ConstraintError
from loupe.core.images.load import LoadedImage
from loupe.core.images.resize import image_tokens_for
from loupe.core.prompt import MEDIA
from loupe.core.schema.spans import leaf_spans
from loupe.core.schema.validate import schema_problem, validation_errors
from loupe.core.tasks import Task, TaskOptions
from loupe.serve import schemas as s
from loupe.serve.errors import ApiError, bad_request
from loupe.serve.images import decode_data_url
from loupe.serve.limits import PixelBudget

DEFAULT_MAX_TOKENS = 1024


@dataclass(frozen=True)
class ChatPlan:
    """A checked chat request, ready for the model thread."""

    text: str
    images: tuple[LoadedImage, ...]
    schema: dict[str, Any] | bool
    detail: str
    max_tokens: int
    temperature: float
    seed: int


def schema_of(req: s.ChatRequest) -> dict[str, Any] | bool:
    """The schema decoding is constrained to, or a 400 explaining what response_format must be."""
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        raise bad_request(
            'Loupe decodes only under a JSON Schema: set response_format to {"type": "json_schema", '
            '"json_schema": {"name": ..., "schema": {...}}} or {"type": "json_object"}; plain text '
            "generation is not offered",
            param="response_format",
            code="response_format_required",
        )
    if fmt.type == "json_object":
        return {"type": "object"}
    if fmt.json_schema is None:
        raise bad_request(
            "response_format.json_schema is required when type is json_schema", param="response_format.json_schema"
        )
    schema = fmt.json_schema.schema_
    problem = schema_problem(schema)
    if problem:
        message, pointer = problem
        raise bad_request(
            f"invalid JSON Schema at {pointer or '/'}: {message}",
            param="response_format.json_schema.schema",
            code="invalid_schema",
        )
    try:
        relaxation_notes(schema)
    except ConstraintError as exc:
        raise bad_request(
            f"the decoding constraint cannot enforce this schema: {exc}",
            param="response_format.json_schema.schema",
            code="unsupported_schema",
        ) from None
    return schema


def _content(
    message: s.Message,
    index: int,
    images: list[LoadedImage],
    details: list[str],
    budget: PixelBudget | None = None,
    held: list[int] | None = None,
) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    out = []
    for j, part in enumerate(message.content):
        if isinstance(part, s.TextPart):
            out.append(part.text)
        else:
            images.append(
                decode_data_url(part.image_url.url, f"messages[{index}].content[{j}].image_url.url", budget, held)
            )
            details.append(part.image_url.detail or "auto")
            out.append(MEDIA)
    return "\n".join(out)


def plan(
    req: s.ChatRequest,
    model_id: str,
    max_tokens_cap: int = DEFAULT_MAX_TOKENS,
    budget: PixelBudget | None = None,
    held: list[int] | None = None,
) -> ChatPlan:
    """Check a request and decode its images (a 400/404 ApiError for anything wrong), each once `budget` has room
    for it (what was taken is appended to `held`)."""
    if req.model != model_id:
        raise ApiError(
            404,
            f"model {req.model!r} is not served here; this server serves {model_id!r}",
            param="model",
            code="model_not_found",
        )
    schema = schema_of(req)
    asked = req.max_completion_tokens or req.max_tokens
    if asked is not None and asked > max_tokens_cap:
        raise bad_request(f"max_tokens={asked} is over this server's limit of {max_tokens_cap}", param="max_tokens")
    images: list[LoadedImage] = []
    details: list[str] = []
    system, turns = [], []
    chat = any(m.role == "assistant" for m in req.messages)
    for i, m in enumerate(req.messages):
        text = _content(m, i, images, details, budget, held)
        if m.role in ("system", "developer"):
            system.append(text)
        else:
            turns.append(f"{m.role.capitalize()}: {text}" if chat else text)
    compact = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    text = "\n".join([*system, *turns, f"Answer with one JSON object that matches this JSON Schema: {compact}"])
    return ChatPlan(
        text=text,
        images=tuple(images),
        schema=schema,
        detail="high" if "high" in details else "low",
        max_tokens=asked or min(DEFAULT_MAX_TOKENS, max_tokens_cap),
        temperature=req.temperature if req.temperature is not None else 0.0,
        seed=req.seed or 0,
    )


def generate(
    engine: Engine, p: ChatPlan, *, cancel: threading.Event | None = None, on_token: OnToken | None = None
) -> Generation:
    """Run the plan on the model (call on the model thread); `on_token` sees each token as it is decoded."""
    if cancel is not None and cancel.is_set():  # the client left while the request waited for the model
        return Generation(text="", stop="cancelled")
    task = Task(
        name="chat", schema=p.schema, instructions="", options=TaskOptions(allow_refusal=False), source="<chat request>"
    )
    try:
        constraint = engine.constraint_for(task)
    except ConstraintError as exc:
        raise bad_request(
            f"the decoding constraint cannot enforce this schema: {exc}",
            param="response_format.json_schema.schema",
            code="unsupported_schema",
        ) from None
    prepared, _ = prepare(p.images, p.detail)
    request = GenerationRequest(
        text=p.text,
        images=tuple(prepared),
        constraint=constraint,
        schema=p.schema,
        max_tokens=p.max_tokens,
        temperature=p.temperature,
        seed=p.seed,
        allow_refusal=False,
        image_max_tokens=image_tokens_for(p.detail),
        on_token=on_token,
    )
    try:
        return engine.backend.generate(request, cancel=cancel)
    except BackendError as exc:
        if "context" in str(exc):
            raise bad_request(str(exc), param="messages", code="context_length_exceeded") from None
        raise ApiError(500, f"the model failed: {exc}", type_="server_error", code="model_error") from None


def token_logprob(piece: bytes, prob: float) -> s.TokenLogprob:
    """One token's entry in `logprobs.content`."""
    return s.TokenLogprob(
        token=piece.decode("utf-8", errors="replace"),
        bytes=list(piece),
        logprob=math.log(prob) if prob > 0 else -9999.0,
    )


def _logprobs(gen: Generation) -> list[s.TokenLogprob]:
    raw = gen.text.encode()
    return [token_logprob(raw[step.start : step.end], step.prob) for step in gen.steps]


def finish_reason(gen: Generation) -> Literal["stop", "length"]:
    """OpenAI's finish_reason for how the generation stopped (the chat path never offers refusal)."""
    return "length" if gen.stop == "max_tokens" else "stop"


def completion(
    req: s.ChatRequest, p: ChatPlan, gen: Generation, model_id: str, took_ms: float, completion_id: str | None = None
) -> s.ChatCompletion:
    """The chat.completion object for one generation (with Loupe's validity and confidence added)."""
    errors: Sequence[str] = []
    confidence: dict[str, float] = {}
    if gen.stop == "max_tokens":
        errors = [f"output reached max_tokens={p.max_tokens} before the JSON ended"]
    else:
        try:
            data = json.loads(gen.text)
        except ValueError as exc:
            errors = [f"output is not JSON: {exc}"]
        else:
            errors = validation_errors(p.schema, data)
            raw = gen.text.encode()
            lead = len(raw) - len(raw.lstrip())
            confidence = field_confidence(gen.steps, leaf_spans(raw[lead:].rstrip(), offset=lead))
    n_completion = len(gen.steps)
    return s.ChatCompletion(
        id=completion_id or f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=model_id,
        choices=[
            s.Choice(
                message=s.AssistantMessage(content=gen.text),
                finish_reason=finish_reason(gen),
                logprobs=s.ChoiceLogprobs(content=_logprobs(gen)) if req.logprobs else None,
            )
        ],
        usage=s.Usage(
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=n_completion,
            total_tokens=gen.prompt_tokens + n_completion,
        ),
        loupe=s.LoupeExtras(
            valid=not errors,
            errors=list(errors),
            confidence=confidence,
            timings={**{k: round(v, 2) for k, v in gen.timings.items()}, "total_ms": round(took_ms, 2)},
        ),
    )
