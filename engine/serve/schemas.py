"""Request and response bodies (pydantic): they validate input and make the published /openapi.json."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

MAX_TOKENS_LIMIT = 8192
MAX_TEXT = 256 * 1024  # characters of one text field: far past any prompt a small model's context holds


class ImageUrl(BaseModel):
    """OpenAI's image_url object; Loupe takes only base64 `data:` URLs."""

    url: str = Field(description="a base64 data URL: data:image/png;base64,...")
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(BaseModel):
    """A text content part."""

    type: Literal["text"]
    text: str = Field(max_length=MAX_TEXT)


class ImagePart(BaseModel):
    """An image content part; `image_url` may also be the URL itself (a bare string, as some clients send it)."""

    type: Literal["image_url"]
    image_url: ImageUrl

    @field_validator("image_url", mode="before")
    @classmethod
    def _bare_url(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value


class FunctionCall(BaseModel):
    """A function call the assistant made: its name and its arguments as a JSON string."""

    name: str
    arguments: str


class ToolCall(BaseModel):
    """One entry of an assistant message's `tool_calls`."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    """One chat message; content is a string or a list of text and image parts."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Annotated[str, Field(max_length=MAX_TEXT)] | list[TextPart | ImagePart] | None = None
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=64)
    tool_call_id: str | None = None


class JsonSchemaFormat(BaseModel):
    """`response_format.json_schema`: the schema decoding is constrained to."""

    model_config = ConfigDict(populate_by_name=True)
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | bool = Field(default=True, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """`json_schema` (constrained to the schema), `json_object` (any JSON object) or `text` (refused)."""

    type: Literal["json_schema", "json_object", "text"]
    json_schema: JsonSchemaFormat | None = None


class FunctionDef(BaseModel):
    """A function the model may call: its arguments are decoded under `parameters` (a JSON Schema)."""

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = Field(default=None, max_length=MAX_TEXT)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    """One entry of `tools` (function tools only)."""

    type: Literal["function"]
    function: FunctionDef


class ToolChoiceFunction(BaseModel):
    """The function a named tool_choice forces."""

    name: str


class NamedToolChoice(BaseModel):
    """`tool_choice` naming the function to call."""

    type: Literal["function"]
    function: ToolChoiceFunction


class StreamOptions(BaseModel):
    """`stream_options`: `include_usage` adds a last chunk with the token counts."""

    include_usage: bool | None = None


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat completion request Loupe honours; any other field is a 400 naming it
    (`user`, `metadata`, `store`, `service_tier`, `prompt_cache_key`, `safety_identifier` are taken: they do not
    change the answer)."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message] = Field(min_length=1, max_length=256)
    response_format: ResponseFormat | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    n: int | None = Field(default=None, ge=1, le=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    stop: (
        Annotated[str, Field(min_length=1, max_length=256)]
        | list[Annotated[str, Field(min_length=1, max_length=256)]]
        | None
    ) = Field(default=None, description="up to 4 strings; the answer ends before the first one it contains")
    top_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None


class TopLogprob(BaseModel):
    """A token and its log probability."""

    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    """One generated token; `top_logprobs` is always empty (only the chosen token's probability is kept)."""

    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(BaseModel):
    """Per-token log probabilities of the constrained decode (renormalized over the tokens the schema allowed)."""

    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class AssistantMessage(BaseModel):
    """The generated message: `content` (under response_format), or `tool_calls` (one call, under its function's
    parameters)."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None

    @model_serializer(mode="wrap")
    def _without_absent_calls(self, handler: Any):
        body = handler(self)
        if body.get("tool_calls") is None:  # OpenAI's spec: an array when present, never null
            body.pop("tool_calls", None)
        return body


class Choice(BaseModel):
    """The one choice Loupe returns."""

    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: ChoiceLogprobs | None = None


class Usage(BaseModel):
    """Token counts (prompt includes image tokens)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class LoupeExtras(BaseModel):
    """Loupe's additions: whether the output validated, per-field confidence, and timings."""

    valid: bool
    errors: list[str] = []
    confidence: dict[str, float] = {}
    timings: dict[str, float] = {}
    notes: list[str] = Field(default=[], description="what Loupe did to the request, e.g. a strict schema closed")


class ChatCompletion(BaseModel):
    """OpenAI's chat.completion object, plus `loupe`."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str
    loupe: LoupeExtras


class FunctionCallDelta(BaseModel):
    """A streamed piece of a function call: the name in the first piece, then pieces of the arguments."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    """A streamed piece of a tool call (`id` and `type` in its first piece)."""

    index: int = 0
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class Delta(BaseModel):
    """What a streamed chunk adds to the message (unset fields are left out of the chunk)."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    """The one choice of a streamed chunk."""

    index: int = 0
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None


class ChatCompletionChunk(BaseModel):
    """One Server-Sent Event of a streamed chat completion; the last one with choices has `loupe`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    loupe: LoupeExtras | None = None


class ModelCard(BaseModel):
    """One served model."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "loupe"


class ModelList(BaseModel):
    """GET /v1/models."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class AnalyzeBody(BaseModel):
    """POST /v1/analyze: one image and exactly one of `task`, `task_file`, or `schema` + `instructions`."""

    model_config = ConfigDict(populate_by_name=True)
    image: str = Field(description="a base64 data URL, or a path to an image file on the server's machine")
    task: str | None = Field(default=None, description="a built-in task name (see `loupe tasks`)")
    task_file: str | None = Field(default=None, description="path of a task file on the server's machine")
    schema_: dict[str, Any] | None = Field(default=None, alias="schema", description="a JSON Schema (object)")
    instructions: str | None = Field(
        default=None, max_length=MAX_TEXT, description="instructions that go with `schema`"
    )
    options: dict[str, Any] | None = Field(default=None, description="task option overrides (max_tokens, ...)")


class StoredResultOut(BaseModel):
    """A Result as stored: its store ids, and the Result JSON (status, data, confidence, boxes, ...)."""

    model_config = ConfigDict(extra="allow")
    id: int
    job_id: int
    created: str
    status: Literal["ok", "refused", "truncated", "invalid", "error"]
    task: str
    model: str
    data: Any = None
    confidence: dict[str, float] = {}
    boxes: list[dict[str, Any]] = []
    error: str | None = None


class ResultsPage(BaseModel):
    """GET /v1/results: newest first."""

    object: Literal["list"] = "list"
    data: list[StoredResultOut]
    total: int
    offset: int
    limit: int
    next_offset: int | None


class SearchHit(BaseModel):
    """One stored result a search found (the same row `loupe search --json` prints)."""

    result_id: int
    job_id: int
    path: str
    status: Literal["ok", "refused", "truncated", "invalid", "error"]
    created: str
    score: float | None = Field(default=None, description="cosine similarity (like) or bm25 relevance (text)")
    distance: int | None = Field(default=None, description="Hamming distance of 64-bit perceptual hashes")
    group: int | None = Field(default=None, description="dupes: which group of near-duplicates")
    image_id: str | None = None


class SearchPage(BaseModel):
    """GET /v1/search: rows best first."""

    object: Literal["list"] = "list"
    data: list[SearchHit]
    measure: str = Field(description="what score/distance measure: cosine, hamming, bm25, or '' (where)")
    note: str = ""


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail
