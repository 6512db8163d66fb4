"""A scripted backend for unit tests of the pipeline: replays given outputs, runs no model."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ClassVar

from loupe.backends.base import Capabilities, Generation, GenerationRequest
from loupe.core.confidence import TokenStep
from loupe.core.constrain.base import Constraint


class _NoConstraint:
    source = "<fake: none>"

    def matcher(self) -> Any:
        raise NotImplementedError("the fake backend does not run matchers")


class FakeBackend:
    """Returns the scripted outputs in order (then repeats the last); each byte is one 'token'.

    An output is a string, or a (string, stop) pair where stop is "eos" | "max_tokens" | "cancelled".
    `request.on_token` (when set) gets every byte as it would get every token of a real decode.
    `probs` gives the probability of every step (default 0.9).
    """

    name: ClassVar[str] = "fake"
    steerable: ClassVar[bool] = True

    def __init__(self, outputs: Sequence[str | tuple[str, str]], *, prob: float = 0.9, model_id: str = "fake"):
        self.outputs = list(outputs)
        self.prob = prob
        self.model_id = model_id
        self.capabilities = Capabilities()
        self.load_ms = 0.0
        self.requests: list[GenerationRequest] = []
        self.closed = False

    @classmethod
    def is_available(cls) -> bool:
        """Always: it needs nothing."""
        return True

    def compile(self, schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> Constraint:
        """No grammar: the script decides what comes out."""
        return _NoConstraint()

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        """The next scripted output, as if generated one byte at a time."""
        self.requests.append(request)
        item = self.outputs[min(len(self.requests) - 1, len(self.outputs) - 1)]
        text, stop = (item, "eos") if isinstance(item, str) else item
        data = text.encode()
        steps = [TokenStep(i, i + 1, self.prob) for i in range(len(data))]
        if request.on_token is not None:
            for step in steps:
                request.on_token(data[step.start : step.end], step)
        return Generation(text=text, steps=steps, stop=stop, prompt_tokens=10)  # type: ignore[arg-type]

    def close(self) -> None:
        """Nothing to free."""
        self.closed = True
