"""Request and response bodies (pydantic): they validate input and make the published /openapi.json."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    """An image content part."""

    type: Literal["image_url"]
    image_url: ImageUrl


class Message(BaseModel):
    """One chat message; content is a string or a list of text and image parts."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[str, Field(max_length=MAX_TEXT)] | list[TextPart | ImagePart] | None = None


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


class StreamOptions(BaseModel):
    """`stream_options`: `include_usage` adds a last chunk with the token counts."""

    include_usage: bool | None = None


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat completion request Loupe honours (other fields are accepted and ignored)."""

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
    """The generated message."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None


class Choice(BaseModel):
    """The one choice Loupe returns."""

    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
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


class ChatCompletion(BaseModel):
    """OpenAI's chat.completion object, plus `loupe`."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    loupe: LoupeExtras


class Delta(BaseModel):
    """What a streamed chunk adds to the message (unset fields are left out of the chunk)."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """The one choice of a streamed chunk."""

    index: int = 0
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    """One Server-Sent Event of a streamed chat completion; the last one with choices has `loupe`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None = None
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


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail
