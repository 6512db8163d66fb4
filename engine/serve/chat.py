"""OpenAI-style chat completions on the loaded model, decoded under the request's JSON Schema.

Loupe's local decoder always runs under a constraint, so a request must say what shape to produce:
`response_format` `json_schema` (that schema) or `json_object` (any JSON object). A request without
one, or with `text`, is refused with a 400 that says so (plain text generation is not offered).
Messages are flattened into one user turn: system/developer text first, then the conversation, each
image where its content part stands.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loupe.api import Engine
from loupe.api.pipeline import prepare
from loupe.backends.base import Generation, GenerationRequest, OnToken
from loupe.core.confidence import TokenStep, field_confidence
from loupe.core.constrain.llguidance import relaxation_notes
from loupe.core.errors import BackendError, ConstraintError
from loupe.core.images.load import LoadedImage
from loupe.core.images.resize import image_tokens_for
from loupe.core.prompt import MEDIA
from loupe.core.schema.spans import leaf_spans
from loupe.core.schema.validate import schema_problem, validation_errors
from loupe.core.tasks import Task, TaskOptions
from loupe.serve import schemas as s
from loupe.serve import tools
from loupe.serve.errors import ApiError, bad_request
from loupe.serve.images import decode_data_url
from loupe.serve.limits import PixelBudget

DEFAULT_MAX_TOKENS = 1024


def _fingerprint() -> str:
    try:
        from importlib.metadata import version

        return f"fp_loupe_{version('loupe')}"
    except Exception:  # not installed (a source checkout on sys.path)
        return "fp_loupe"


FINGERPRINT = _fingerprint()  # OpenAI's system_fingerprint: this build of Loupe


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
    tool: tools.ToolPlan | None = None  # the answer is a call of one of these functions
    stop: tuple[str, ...] = ()  # stop sequences (content answers only)
    notes: tuple[str, ...] = ()  # what Loupe did to the request, said in the reply's `loupe.notes`
    param: str = "response_format.json_schema.schema"  # the request field the schema came from


@dataclass
class ChatGeneration(Generation):
    """A generation, cut before a stop sequence when it reached one."""

    stop_sequence: str | None = None


def _no_schema(tools_given: bool) -> ApiError:
    return bad_request(
        'Loupe decodes only under a JSON Schema: set response_format to {"type": "json_schema", '
        '"json_schema": {"name": ..., "schema": {...}}} or {"type": "json_object"}, or give tools with '
        f"tool_choice 'auto', 'required' or a function{' (tool_choice is none)' if tools_given else ''}; plain "
        "text generation is not offered",
        param="response_format",
        code="response_format_required",
    )


def checked(schema: Any, param: str) -> Any:
    """`schema` when it is a JSON Schema the constraint can enforce, else a 400 naming `param`."""
    problem = schema_problem(schema)
    if problem:
        message, pointer = problem
        raise bad_request(f"invalid JSON Schema at {pointer or '/'}: {message}", param=param, code="invalid_schema")
    try:
        relaxation_notes(schema)
    except ConstraintError as exc:
        raise bad_request(
            f"the decoding constraint cannot enforce this schema: {exc}", param=param, code="unsupported_schema"
        ) from None
    return schema


def schema_of(req: s.ChatRequest, texts: Sequence[str] = ()) -> tuple[dict[str, Any] | bool, list[str]]:
    """The schema a content answer is constrained to, with notes, or a 400 explaining what response_format must
    be. Without a response_format, a JSON Schema written out in the system/developer text `texts` (as instructor's
    MD_JSON mode sends it) is used."""
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        for i, text in enumerate(texts):
            found = tools.schema_in(text)
            if found is not None and schema_problem(found) is None:
                return checked(found, "messages"), [
                    "no response_format: decoded under the JSON Schema written in the system message"
                    + (f" {i + 1}" if len(texts) > 1 else "")
                ]
        raise _no_schema(bool(req.tools))
    if fmt.type == "json_object":
        return {"type": "object"}, []
    if fmt.json_schema is None:
        raise bad_request(
            "response_format.json_schema is required when type is json_schema", param="response_format.json_schema"
        )
    schema = fmt.json_schema.schema_
    notes = []
    if fmt.json_schema.strict:
        schema, changed = tools.close_strict(schema, "response_format.json_schema.schema")
        if changed:
            notes.append(tools.strict_note("response_format.json_schema.schema", changed))
    return checked(schema, "response_format.json_schema.schema"), notes


def _content(
    message: s.Message,
    index: int,
    images: list[LoadedImage],
    details: list[str],
    budget: PixelBudget | None = None,
    held: list[int] | None = None,
) -> str:
    calls = [f"called {c.function.name}({c.function.arguments})" for c in message.tool_calls or []]
    if message.content is None or isinstance(message.content, str):
        return "\n".join([message.content or "", *calls]).strip("\n")
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
    return "\n".join([*out, *calls])


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
    tools.refuse_unsupported(req)
    stop = tools.stops(req)
    asked = req.max_completion_tokens or req.max_tokens
    if asked is not None and asked > max_tokens_cap:
        raise bad_request(f"max_tokens={asked} is over this server's limit of {max_tokens_cap}", param="max_tokens")
    called = tools.tool_request(req)
    images: list[LoadedImage] = []
    details: list[str] = []
    system, turns = [], []
    chat = any(m.role in ("assistant", "tool") for m in req.messages)
    for i, m in enumerate(req.messages):
        text = _content(m, i, images, details, budget, held)
        if m.role in ("system", "developer"):
            system.append(text)
        else:
            turns.append(f"{m.role.capitalize()}: {text}" if chat else text)
    tool_plan, param = None, "response_format.json_schema.schema"
    if called is None:
        schema, notes = schema_of(req, system)
        compact = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
        ask = f"Answer with one JSON object that matches this JSON Schema: {compact}"
    else:
        chosen, why = called
        index = {t.function.name: i for i, t in enumerate(req.tools or [])}
        params, notes = [], [why]
        for t in chosen:
            p, n = tools.parameters_of(t, index[t.function.name])
            params.append(p)
            notes += n
        param = f"tools[{index[chosen[0].function.name]}].function.parameters" if len(chosen) == 1 else "tools"
        if req.response_format is not None and req.response_format.type != "text":
            notes.append("response_format applies to content answers; the answer is a tool call")
        schema = checked(params[0] if len(chosen) == 1 else tools.envelope(chosen, params), param)
        tool_plan = tools.ToolPlan(tuple(t.function.name for t in chosen))
        ask = tools.tool_prompt(chosen, schema)
        stop = ()  # stop sequences end content, never a call's arguments
    schema, opened = tools.close_unsaid(schema)
    if opened:
        notes.append(
            f"decoded without keys the schema does not name (no additionalProperties given) at {', '.join(opened[:8])}"
        )
    return ChatPlan(
        text="\n".join([*system, *turns, ask]),
        images=tuple(images),
        schema=schema,
        detail="high" if "high" in details else "low",
        max_tokens=asked or min(DEFAULT_MAX_TOKENS, max_tokens_cap),
        temperature=req.temperature if req.temperature is not None else 0.0,
        seed=req.seed or 0,
        tool=tool_plan,
        stop=stop,
        notes=tuple(notes),
        param=param,
    )


class _Either(threading.Event):
    """Set when any of its events is (the backend polls `is_set`)."""

    def __init__(self, *events: threading.Event | None) -> None:
        super().__init__()
        self.events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


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
            f"the decoding constraint cannot enforce this schema: {exc}", param=p.param, code="unsupported_schema"
        ) from None
    halt, watch = threading.Event(), on_token
    if p.stop:  # stop the model once the text holds a stop sequence
        scanner, utf8 = tools.StopScanner(p.stop), tools.utf8_decoder()

        def watch(piece: bytes, step: TokenStep) -> None:
            if not scanner.hit:
                scanner.feed(utf8.decode(piece))
                if scanner.hit:
                    halt.set()
            if on_token is not None:
                on_token(piece, step)

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
        on_token=watch,
    )
    try:
        gen = engine.backend.generate(request, cancel=_Either(cancel, halt) if p.stop else cancel)
    except BackendError as exc:
        if "context" in str(exc):
            raise bad_request(str(exc), param="messages", code="context_length_exceeded") from None
        raise ApiError(500, f"the model failed: {exc}", type_="server_error", code="model_error") from None
    return _cut(gen, p.stop, client_left=cancel is not None and cancel.is_set())


def _cut(gen: Generation, stop: tuple[str, ...], *, client_left: bool) -> Generation:
    """The generation ended before its first stop sequence (OpenAI's `stop`: the sequence itself is left out)."""
    at = tools.cut_at_stop(gen.text, stop) if stop else None
    if at is None:
        return gen
    text = gen.text[:at]
    n = len(text.encode())
    fields = {f.name: getattr(gen, f.name) for f in dataclasses.fields(gen)}
    fields.update(
        text=text,
        steps=[st for st in gen.steps if st.start < n],
        stop="cancelled" if client_left else "eos",
        stop_sequence=next(x for x in stop if gen.text.find(x) == at),
    )
    return ChatGeneration(**fields)


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


def call_id(completion_id: str) -> str:
    """The id of a completion's tool call (the same in its stream and in its reply)."""
    return "call_" + completion_id.rpartition("-")[2][:24]


def message(p: ChatPlan, gen: Generation, completion_id: str) -> s.AssistantMessage:
    """The reply's message: the content, or the tool call the content is the arguments of."""
    call = tools.call_of(gen.text, p.tool) if p.tool is not None else None
    if call is None:
        return s.AssistantMessage(content=gen.text)
    name, arguments = call
    return s.AssistantMessage(
        content=None,
        tool_calls=[s.ToolCall(id=call_id(completion_id), function=s.FunctionCall(name=name, arguments=arguments))],
    )


def completion(
    req: s.ChatRequest, p: ChatPlan, gen: Generation, model_id: str, took_ms: float, completion_id: str | None = None
) -> s.ChatCompletion:
    """The chat.completion object for one generation (with Loupe's validity and confidence added)."""
    completion_id = completion_id or f"chatcmpl-{uuid.uuid4().hex}"
    errors: Sequence[str] = []
    confidence: dict[str, float] = {}
    stopped = getattr(gen, "stop_sequence", None)
    if gen.stop == "max_tokens":
        errors = [f"output reached max_tokens={p.max_tokens} before the JSON ended"]
    elif stopped is not None:
        errors = [f"output ended before the stop sequence {stopped!r}"]
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
    msg = message(p, gen, completion_id)
    return s.ChatCompletion(
        id=completion_id,
        created=int(time.time()),
        model=model_id,
        system_fingerprint=FINGERPRINT,
        choices=[
            s.Choice(
                message=msg,
                finish_reason="length" if gen.stop == "max_tokens" else ("tool_calls" if msg.tool_calls else "stop"),
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
            notes=list(p.notes),
        ),
    )
