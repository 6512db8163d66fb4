"""A small fault-injecting OpenAI-compatible chat-completions server on 127.0.0.1, standing in for the cloud.

Written for these tests (http.server, one thread per request) rather than `llama_cpp.server`, whose extra
dependencies (fastapi, uvicorn) are not installed: it answers scripted replies in order and keeps every
request's raw bytes so tests can inspect exactly what left the client.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, headers, body; `hang` holds the reply until the server stops."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    hang: bool = False


def completion(content: str | None, *, finish: str = "stop", refusal: str | None = None,
               prompt_tokens: int = 1000, completion_tokens: int = 20) -> Reply:
    """A well-formed chat completion."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    body = {"id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}
    return Reply(200, json.dumps(body).encode(), (("Content-Type", "application/json"),))


def error(status: int, *, retry_after: str | None = None) -> Reply:
    """An OpenAI-style error body with `status`, optionally with a Retry-After header."""
    headers = [("Content-Type", "application/json")]
    if retry_after is not None:
        headers.append(("Retry-After", retry_after))
    body = json.dumps({"error": {"message": f"stub error {status}", "type": "stub", "code": status}}).encode()
    return Reply(status, body, tuple(headers))


@dataclass
class Received:
    """One request as it arrived: path, headers, raw body bytes."""

    path: str
    headers: dict[str, str]
    body: bytes

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
                with stub._lock:
                    stub.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
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
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="stub-cloud",
                                        daemon=True)
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
