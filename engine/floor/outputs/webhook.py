"""HTTP webhook output: POST the verdict as JSON; any 2xx is delivered, anything else is retried."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from loupe.floor.outputs.base import OutputError


class WebhookSink:
    """POSTs each message to one URL."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0, headers: dict[str, str] | None = None) -> None:
        self.url, self.timeout_s = url, float(timeout_s)
        self.destination = url
        self.headers = {"Content-Type": "application/json", "User-Agent": "loupe", **(headers or {})}

    def send(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise OutputError(f"webhook {self.url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OutputError(f"webhook {self.url}: {reason}") from None

    def close(self) -> None:
        pass
