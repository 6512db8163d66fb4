"""Request bodies bounded while they are read: a body over the limit is refused with 413 before it fills memory."""

from __future__ import annotations

import json
import threading
from typing import Any

Scope = dict[str, Any]
DEFAULT_MAX_BODY = 24 << 20  # a phone photo as a base64 data URL is 3-11 MB; bigger images go by --allow-path


class BodyLimit:
    """ASGI middleware: refuse a request whose Content-Length is over `max_bytes` at once, and one sent without it
    (chunked) as soon as what arrived passes `max_bytes`; the app reads at most `max_bytes` of any body."""

    def __init__(self, app: Any, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        body, more = bytearray(), True
        while more:  # read the body here, bounded, then hand it to the app from memory
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._refuse(send)
                return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()  # after the body: disconnects and the like
            sent = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        payload = json.dumps(
            {
                "error": {
                    "message": f"the request body is over this server's limit of {self.max_bytes >> 20} MiB "
                    "(loupe serve --max-body-mb raises it; large images can be read from --allow-path roots)",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "request_too_large",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class PixelBudget:
    """Decoded pixels the server holds at once. A request takes room for its images (their declared size, read from
    the header) before decoding them and gives it back when it is answered; others wait, holding only their
    compressed bytes. One image larger than the whole budget gets it alone."""

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self.used = 0
        self._room = threading.Condition()

    def take(self, pixels: int, timeout: float = 300.0) -> int:
        """Wait for room for `pixels` (at most the whole budget); the amount taken, to give back. TimeoutError when
        no room came within `timeout`."""
        n = max(0, min(pixels, self.max_pixels))
        with self._room:
            if not self._room.wait_for(lambda: self.used + n <= self.max_pixels, timeout):
                raise TimeoutError(f"no room to decode {pixels / 1e6:.0f} Mpx within {timeout:.0f} s")
            self.used += n
        return n

    def give_back(self, pixels: int) -> None:
        with self._room:
            self.used -= pixels
            self._room.notify_all()
