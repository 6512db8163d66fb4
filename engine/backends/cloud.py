"""A backend for OpenAI-compatible chat-completions servers (cloud or local network), off unless enabled."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from loupe.backends.base import Capabilities, Generation, GenerationRequest
from loupe.core.cloud import PRESETS, RESPONSE_STYLES, CloudConfig, Preset
from loupe.core.constrain.base import REFUSAL_PREFIX, Constraint
from loupe.core.errors import BackendError
from loupe.core.images.resize import fit
from loupe.core.prompt import MEDIA
from loupe.core.secrets import redact
from PIL import Image

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
CANCEL_POLL_S = 0.05  # how often an in-flight request looks at its cancel event
AuditSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class CallRecord:
    """One HTTP request that left the machine (what the audit table stores)."""

    host: str
    model: str
    status: int | str  # HTTP status, or "timeout" / "connection" / "cancelled"
    bytes_out: int
    bytes_in: int
    image_sha256: tuple[str, ...]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    ms: float = 0.0
    fields: tuple[str, ...] = ()  # top-level keys of the JSON that came back

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for the audit table)."""
        return {
            "host": self.host,
            "model": self.model,
            "status": self.status,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
            "image_sha256": list(self.image_sha256),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "ms": self.ms,
            "fields": list(self.fields),
        }


class _SchemaOnly:
    """The cloud's 'constraint' is the schema sent as response_format; nothing to run locally."""

    source = "<cloud: response_format json_schema>"

    def matcher(self) -> Any:
        raise NotImplementedError("the cloud backend does not run matchers")


def encode_image(img: Image.Image, max_side: int, fmt: str = "PNG") -> bytes:
    """Pixels only: downscaled, rebuilt from raw bytes (no EXIF, GPS, ICC or text chunks), PNG or JPEG."""
    small, _ = fit(img, max_side)
    rgb = small.convert("RGB")
    clean = Image.frombytes("RGB", rgb.size, rgb.tobytes())  # a fresh image carries no `info` at all
    buf = io.BytesIO()
    if fmt.upper() == "JPEG":
        clean.save(buf, format="JPEG", quality=90)
    else:
        clean.save(buf, format="PNG")
    return buf.getvalue()


def _mime(fmt: str) -> str:
    return "image/jpeg" if fmt.upper() == "JPEG" else "image/png"


def build_messages(request: GenerationRequest, encoded: list[bytes], fmt: str) -> list[dict[str, Any]]:
    """One user message: text parts split at each `prompt.MEDIA`, with the images as data URLs in between."""
    pieces = request.text.split(MEDIA)
    if len(pieces) - 1 != len(encoded):
        raise BackendError(f"prompt has {len(pieces) - 1} image markers for {len(encoded)} images")
    content: list[dict[str, Any]] = []
    for i, piece in enumerate(pieces):
        if piece:
            content.append({"type": "text", "text": piece})
        if i < len(encoded):
            url = f"data:{_mime(fmt)};base64,{base64.b64encode(encoded[i]).decode()}"
            content.append({"type": "image_url", "image_url": {"url": url}})
    return [{"role": "user", "content": content}]


def response_format(
    schema: dict[str, Any] | bool, name: str = "loupe_result", style: str = "json_schema"
) -> dict[str, Any] | None:
    """The response_format for `style`: OpenAI's strict json_schema, llama-cpp-python's json_object + schema, or
    None (the server ignores it; the schema is in the prompt and the reply is validated)."""
    return RESPONSE_FORMATS[style](schema, name)


RESPONSE_FORMATS: dict[str, Callable[[dict[str, Any] | bool, str], dict[str, Any] | None]] = {
    "json_schema": lambda schema, name: {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": True},
    },
    "json_object": lambda schema, _name: {"type": "json_object", "schema": schema},
    "none": lambda _schema, _name: None,
}
assert tuple(RESPONSE_FORMATS) == RESPONSE_STYLES  # the names CloudConfig accepts (loupe.core.cloud)

__all__ = ["PRESETS", "RESPONSE_FORMATS", "CloudBackend", "CloudConfig", "Preset"]


def parse_completion(body: bytes) -> tuple[str, str, dict[str, int]]:
    """(text, stop, usage) from a chat-completions body; a refusal becomes `REFUSE: reason`.

    Anything that is not a chat completion raises BackendError with a short excerpt of what came back.
    """
    try:
        payload = json.loads(body)
        choice = payload["choices"][0]
        message = choice["message"]
        finish = choice.get("finish_reason") or "stop"
        usage = payload.get("usage") or {}
        tokens = {
            "prompt": int(usage.get("prompt_tokens") or 0),
            "completion": int(usage.get("completion_tokens") or 0),
        }
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        excerpt = body[:120].decode("utf-8", "replace")
        raise BackendError(f"cloud: the reply is not a chat completion ({type(exc).__name__}): {excerpt!r}") from None
    refusal = message.get("refusal") if isinstance(message, dict) else None
    if refusal:
        return f"{REFUSAL_PREFIX} {refusal}", "eos", tokens
    if finish == "content_filter":
        return f"{REFUSAL_PREFIX} blocked by the provider's content filter", "eos", tokens
    content = message.get("content") if isinstance(message, dict) else None
    text = content if isinstance(content, str) else ""
    return text, ("max_tokens" if finish == "length" else "eos"), tokens


def retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header, when it is a number."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def _usage_and_fields(reply: bytes) -> tuple[tuple[int, int], tuple[str, ...]]:
    """(prompt, completion) tokens and the top-level keys of the answer, for the audit (best effort)."""
    try:
        payload = json.loads(reply)
        usage = payload.get("usage") or {}
        tokens = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    except (ValueError, AttributeError, TypeError):
        return (0, 0), ()
    try:
        answer = json.loads(payload["choices"][0]["message"]["content"])
        return tokens, tuple(sorted(answer)) if isinstance(answer, dict) else ()
    except (ValueError, KeyError, IndexError, TypeError):
        return tokens, ()


def _body_len(request: Any, fallback: int) -> int:
    """Bytes of the request body as sent (the HTTP request the client built), else our own count."""
    try:
        return len(request.content)
    except Exception:  # a request whose body was streamed or never built
        return fallback


@dataclass(frozen=True)
class Sent:
    """One HTTP request's outcome: the reply body (HTTP 200), or what went wrong, never raised."""

    status: int | str  # HTTP status, or "timeout" / "connection" / "cancelled"
    reply: bytes | None = None
    problem: str = ""  # what went wrong, key redacted
    wait: float | None = None  # the server's Retry-After, in seconds

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed (429, 5xx, timeouts, dropped connections)."""
        return self.status in RETRY_STATUSES or self.status in ("timeout", "connection")


_CANCELED = object()


async def _until_canceled(coro: Any, cancel: threading.Event | None) -> Any:
    """Await `coro`, but abandon it (closing its connection) within CANCEL_POLL_S of `cancel` being set."""
    task = asyncio.ensure_future(coro)
    while cancel is not None and not task.done():
        if cancel.is_set():
            task.cancel()
            try:
                return await task  # it may have finished in the meantime
            except asyncio.CancelledError:
                return _CANCELED
        await asyncio.wait({task}, timeout=CANCEL_POLL_S)
    return await task


def _run(coro: Any) -> Any:
    """Run `coro` on a fresh event loop of this thread; a thread already running one (an async server's) must
    call the backend from a worker thread instead, as a blocking call inside its loop would stall it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise BackendError("cloud: called from inside a running event loop; call it from a worker thread")


@dataclass
class CloudBackend:
    """Sends each request to an OpenAI-compatible server; every request is recorded through `audit`.

    `sleep` and `rand` are injected so tests never wait; `audit` is called once per HTTP request, on the
    calling thread. Requests run on a short-lived event loop, so a `cancel` aborts one in flight at once
    (the connection is closed) instead of waiting for its timeout.
    """

    name: ClassVar[str] = "cloud"
    steerable: ClassVar[bool] = False

    config: CloudConfig
    api_key: str | None = field(default=None, repr=False)  # never printed; see loupe.core.secrets for where it lives
    audit: AuditSink | None = None
    sleep: Callable[[float], None] = time.sleep  # the default waits on `cancel` instead, so a cancel cuts it short
    rand: Callable[[], float] = random.random
    calls: list[CallRecord] = field(default_factory=list)
    load_ms: float = 0.0

    def __post_init__(self) -> None:
        self.base_url, self.model_id = self.config.resolved()
        self.host = urlsplit(self.base_url).netloc
        self.capabilities = Capabilities(token_confidence=False, max_context=128_000)

    @classmethod
    def is_available(cls) -> bool:
        """Whether the `openai` package is installed (find_spec only)."""
        import importlib.util

        return importlib.util.find_spec("openai") is not None

    def compile(self, schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> Constraint:
        """Nothing to compile: the schema travels as response_format."""
        return _SchemaOnly()

    def _client(self) -> Any:
        """A fresh async `openai` client (bound to the running loop; no retries of its own: ours honour
        Retry-After)."""
        import openai

        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key or "not-needed", timeout=self.config.timeout_s, max_retries=0
        )

    def send(
        self, body: dict[str, Any], *, images: tuple[str, ...] = (), cancel: threading.Event | None = None
    ) -> Sent:
        """One audited HTTP request of a chat-completions `body` (`images`: the sha256s of those inside)."""
        return _run(self._send_with_own_client(body, images, cancel))

    async def _send_with_own_client(
        self, body: dict[str, Any], shas: tuple[str, ...], cancel: threading.Event | None
    ) -> Sent:
        client = self._client()
        try:
            return await self._send(client, body, shas, cancel)
        finally:
            await client.close()

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        """One structured answer, retrying 429 / 5xx / timeouts with backoff; failures raise BackendError."""
        if not self.config.enabled:
            raise BackendError("cloud: disabled; enable it for this task before anything is sent")
        t0 = time.perf_counter()
        fmt = self.config.image_format
        encoded = [encode_image(p.image, self.config.max_side, fmt) for p in request.images]
        shas = tuple(hashlib.sha256(b).hexdigest() for b in encoded)
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": build_messages(request, encoded, fmt),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
        }
        fmt_body = response_format(request.schema, style=self.config.schema_style())
        if fmt_body is not None:
            body["response_format"] = fmt_body
        sent = _run(self._attempts(body, shas, cancel))
        if sent.status == "cancelled":
            return Generation(text="", stop="cancelled")
        if sent.reply is None:
            raise BackendError(sent.problem)
        text, stop, tokens = parse_completion(sent.reply)
        ms = (time.perf_counter() - t0) * 1000
        return Generation(
            text=text,
            stop=stop,
            prompt_tokens=tokens["prompt"],  # type: ignore[arg-type]
            timings={"decode_ms": ms},
        )

    async def _attempts(self, body: dict[str, Any], shas: tuple[str, ...], cancel: threading.Event | None) -> Sent:
        """Attempts until a reply, a final error (its `problem` says why) or a cancel, on one client."""
        client = self._client()
        try:
            for attempt in range(self.config.max_retries + 1):
                if cancel is not None and cancel.is_set():
                    return Sent("cancelled")
                sent = await self._send(client, body, shas, cancel)
                if sent.reply is not None or sent.status == "cancelled":
                    return sent
                if not sent.retryable:
                    return Sent(sent.status, problem=f"cloud: {self.host} answered {sent.problem}")
                if sent.wait is not None and sent.wait > self.config.backoff_max_s:
                    return Sent(
                        sent.status,
                        problem=(
                            f"cloud: {self.host} answered {sent.problem} and asks to wait {sent.wait:g} s "
                            f"(more than backoff_max_s={self.config.backoff_max_s:g}); try again later"
                        ),
                    )
                if attempt < self.config.max_retries:
                    backoff = min(self.config.backoff_max_s, self.config.backoff_s * 2**attempt)
                    self._pause(sent.wait if sent.wait is not None else backoff * (1.0 + self.rand()), cancel)
            return Sent(
                sent.status,
                problem=f"cloud: {self.host} failed after {self.config.max_retries + 1} attempts: {sent.problem}",
            )
        finally:
            await client.close()

    def _pause(self, seconds: float, cancel: threading.Event | None) -> None:
        """Back off; the default sleep waits on `cancel` so that a cancel ends the wait at once."""
        if self.sleep is time.sleep and cancel is not None:
            cancel.wait(seconds)
        else:
            self.sleep(seconds)

    async def _send(
        self, client: Any, body: dict[str, Any], shas: tuple[str, ...], cancel: threading.Event | None
    ) -> Sent:
        """One HTTP request, recorded through `audit` whatever its outcome (a canceled one too)."""
        import openai

        bytes_out = len(json.dumps(body, separators=(",", ":")).encode())  # replaced by the real count when known
        t = time.perf_counter()
        try:
            raw = await _until_canceled(client.chat.completions.with_raw_response.create(**body), cancel)
        except openai.APITimeoutError as exc:
            self._record("timeout", _body_len(exc.request, bytes_out), 0, shas, t)
            return Sent("timeout", problem=f"timed out after {self.config.timeout_s:g} s")
        except openai.APIConnectionError as exc:
            self._record("connection", _body_len(exc.request, bytes_out), 0, shas, t)
            return Sent("connection", problem=redact(f"connection failed ({exc})", self.api_key))
        except openai.APIStatusError as exc:
            resp = exc.response
            self._record(exc.status_code, _body_len(exc.request, bytes_out), len(resp.content or b""), shas, t)
            problem = f"HTTP {exc.status_code}"
            if exc.status_code not in RETRY_STATUSES:
                problem += f": {redact(str(exc)[:200], self.api_key)}"
            return Sent(exc.status_code, problem=problem, wait=retry_after(resp.headers))
        if raw is _CANCELED:
            self._record("cancelled", bytes_out, 0, shas, t)
            return Sent("cancelled", problem="cancelled")
        reply: bytes = raw.content
        tokens, fields = _usage_and_fields(reply)
        self._record(raw.status_code, _body_len(raw.http_request, bytes_out), len(reply), shas, t, tokens, fields)
        return Sent(raw.status_code, reply=reply)

    def _record(
        self,
        status: int | str,
        bytes_out: int,
        bytes_in: int,
        shas: tuple[str, ...],
        t: float,
        tokens: tuple[int, int] = (0, 0),
        fields: tuple[str, ...] = (),
    ) -> None:
        call = CallRecord(
            self.host,
            self.model_id,
            status,
            bytes_out,
            bytes_in,
            shas,
            tokens[0],
            tokens[1],
            round(self.config.cost(*tokens), 8),
            round((time.perf_counter() - t) * 1000, 2),
            fields,
        )
        self.calls.append(call)
        if self.audit is not None:
            self.audit(call.to_dict())

    def close(self) -> None:
        """Nothing to release: each call opens and closes its own client (connections included)."""
