"""JSON Schema -> LLGuidance grammar (compact JSON, or a one-line refusal) and its token matcher."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import llguidance as llg
import numpy as np

from engine.constrain.base import REFUSAL_PREFIX
from engine.errors import ConstraintError

if TYPE_CHECKING:
    from llguidance import LLTokenizer

# compact JSON: no free whitespace, which random and small models would otherwise loop on
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
REFUSAL_MAX_CHARS = 300


def grammar_for(schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> str:
    """The Lark grammar text: the schema's JSON, or (if allowed) `REFUSE: <one line>`."""
    if schema is True:
        schema = {}
    if schema is False:
        if not allow_refusal:
            raise ConstraintError("the schema `false` admits no output at all")
        body = ""
    else:
        spec = dict(schema)
        spec["x-guidance"] = {**JSON_OPTIONS, **(spec.get("x-guidance") or {})}
        body = f"data: %json {json.dumps(spec, separators=(',', ':'))}\n"
    refusal = f'refusal: "{REFUSAL_PREFIX} " REASON\nREASON: /[^\\x00-\\x1f]{{1,{REFUSAL_MAX_CHARS}}}/\n'
    if not body:
        return "start: refusal\n" + refusal
    if not allow_refusal:
        return "start: data\n" + body
    return "start: data | refusal\n" + body + refusal


class LLGuidanceMatcher:
    """One generation's state in LLGuidance."""

    def __init__(self, matcher: llg.LLMatcher) -> None:
        self._m = matcher

    def fill_mask(self, mask: np.ndarray) -> None:
        """See `Matcher.fill_mask`."""
        self._m.unsafe_compute_mask_ptr(mask.ctypes.data, mask.size * mask.itemsize)

    def consume(self, token: int) -> bool:
        """See `Matcher.consume`."""
        return bool(self._m.consume_token(token))

    def is_accepting(self) -> bool:
        """See `Matcher.is_accepting`."""
        return bool(self._m.is_accepting())

    def is_stopped(self) -> bool:
        """See `Matcher.is_stopped`."""
        return bool(self._m.is_stopped())

    def error(self) -> str:
        """See `Matcher.error`."""
        return self._m.get_error() if self._m.is_error() else ""


class LLGuidanceConstraint:
    """A grammar checked against one tokenizer."""

    def __init__(self, tokenizer: LLTokenizer, source: str) -> None:
        self._tokenizer = tokenizer
        self.source = source

    def matcher(self) -> LLGuidanceMatcher:
        """A fresh matcher (grammar construction is ~1 ms)."""
        m = llg.LLMatcher(self._tokenizer, self.source, log_level=0)
        if m.is_error():
            raise ConstraintError(f"cannot compile the schema for decoding: {_first_lines(m.get_error())}")
        return LLGuidanceMatcher(m)


class LLGuidanceCompiler:
    """Compiles schemas with LLGuidance for one tokenizer (the recommended engine)."""

    name = "llguidance"

    def __init__(self, tokenizer: LLTokenizer) -> None:
        self.tokenizer = tokenizer

    def compile(self, schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> LLGuidanceConstraint:
        """See `ConstraintCompiler.compile`."""
        source = grammar_for(schema, allow_refusal=allow_refusal)
        is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(source, self.tokenizer)
        if is_error:
            detail = _first_lines(messages[0] if messages else "")
            raise ConstraintError(f"cannot compile the schema for decoding: {detail}")
        return LLGuidanceConstraint(self.tokenizer, source)


def _first_lines(message: str) -> str:
    """LLGuidance errors quote the whole grammar; keep the lines that say what is wrong."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    keep = [re.sub(r"^at \d+\(\d+\): ", "", lines[0])] if lines else ["unknown error"]
    keep += [ln for ln in lines[1:] if ln.startswith("error:")]
    return " ".join(keep)


def check_schema_compiles(schema: dict[str, Any] | bool) -> str | None:
    """None if LLGuidance can compile `schema` (no tokenizer needed), else its message."""
    try:
        source = grammar_for(schema, allow_refusal=True)
    except ConstraintError as exc:
        return str(exc)
    is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(source, None)
    return _first_lines(messages[0] if messages else "") if is_error else None
