"""The seam every line output plugs into (Sink), and a fake beside it for tests."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from loupe.core.errors import LoupeError


class OutputError(LoupeError):
    """A sink could not take a message now (unreachable, refused); the message stays queued and is retried."""


class Sink(Protocol):
    """Somewhere a verdict message goes. `send` returns when the far side has it, else raises OutputError."""

    name: str  # the outbox's `sink` column: one ordered queue per name
    destination: str  # where, in words (URL, topic)

    def send(self, payload: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class FakeSink:
    """Records what it is sent; `down` makes it refuse (a broker outage without a broker)."""

    def __init__(self, name: str = "fake", destination: str = "memory") -> None:
        self.name, self.destination = name, destination
        self.sent: list[dict[str, Any]] = []
        self.down = False
        self.closed = False
        self.received = threading.Event()

    def send(self, payload: dict[str, Any]) -> None:
        if self.down:
            raise OutputError(f"{self.name}: down")
        self.sent.append(payload)
        self.received.set()

    def close(self) -> None:
        self.closed = True
