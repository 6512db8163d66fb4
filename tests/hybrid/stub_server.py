"""A small fault-injecting OpenAI-compatible chat-completions server on 127.0.0.1, standing in for the cloud.

The real server (`llama_cpp.server`, see llama_server.py) cannot be told to time out, rate-limit, refuse or
send garbage; this one (http.server, one thread per request) answers scripted replies in order, keeps every
request's raw bytes, and inspects each image it receives as it arrives (format, size, metadata), so tests can
check on the server side exactly what left the client.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, headers, body; `hang` holds the reply until the server stops."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    hang: bool = False


def completion(
    content: str | None,
    *,
    finish: str = "stop",
    refusal: str | None = None,
    prompt_tokens: int = 1000,
    completion_tokens: int = 20,
) -> Reply:
    """A well-formed chat completion."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    body = {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": "stub-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return Reply(200, json.dumps(body).encode(), (("Content-Type", "application/json"),))


def error(status: int, *, retry_after: str | None = None) -> Reply:
    """An OpenAI-style error body with `status`, optionally with a Retry-After header."""
    headers = [("Content-Type", "application/json")]
    if retry_after is not None:
        headers.append(("Retry-After", retry_after))
    body = json.dumps({"error": {"message": f"stub error {status}", "type": "stub", "code": status}}).encode()
    return Reply(status, body, tuple(headers))


def garbage(body: bytes = b"<html>502 Bad Gateway</html>") -> Reply:
    """A 200 whose body is not a chat completion."""
    return Reply(200, body, (("Content-Type", "application/json"),))


def refusal(reason: str = "I can't help with that.") -> Reply:
    """A structured-output refusal (OpenAI's `message.refusal`)."""
    return completion(None, refusal=reason)


HANG = Reply(hang=True)  # never answers (until the server closes): the client times out


@dataclass(frozen=True)
class SeenImage:
    """What the server found in one image data URL: format, size, and any metadata it carried."""

    mime: str
    format: str | None
    size: tuple[int, int]
    exif_tags: int  # number of EXIF tags (0 = none)
    info_keys: tuple[str, ...]  # PIL's `info` keys: exif, icc_profile, dpi, text chunks...
    has_exif_marker: bool  # the raw bytes contain an `Exif` header anywhere


def inspect_images(body: bytes) -> list[SeenImage]:
    """Every `image_url` data URL in a chat-completions body, decoded and examined (server side)."""
    try:
        messages = json.loads(body).get("messages") or []
    except (ValueError, AttributeError):
        return []
    seen = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            url = (part.get("image_url") or {}).get("url", "") if isinstance(part, dict) else ""
            if not url.startswith("data:"):
                continue
            head, _, data = url.partition(",")
            raw = base64.b64decode(data)
            img = Image.open(io.BytesIO(raw))
            seen.append(
                SeenImage(
                    head[5:].split(";")[0],
                    img.format,
                    img.size,
                    len(img.getexif()),
                    tuple(sorted(img.info)),
                    b"Exif" in raw,
                )
            )
    return seen


@dataclass
class Received:
    """One request as it arrived: path, headers, raw body bytes, and the images found in it (server side)."""

    path: str
    headers: dict[str, str]
    body: bytes
    images: list[SeenImage] = field(default_factory=list)

    @property
    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class StubCloud:
    """The server: `script` is consumed in order (the last reply repeats); `received` grows per request."""

    script: list[Reply] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen = inspect_images(body)
                with stub._lock:
                    stub.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, seen)
                    )
                    n = len(stub.received)
                    reply = stub.script[min(n, len(stub.script)) - 1] if stub.script else error(500)
                if reply.hang:
                    stub._stop.wait()
                    return
                self.send_response(reply.status)
                for k, v in reply.headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="stub-cloud", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT/v1"""
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        """Release hung requests and stop serving."""
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
