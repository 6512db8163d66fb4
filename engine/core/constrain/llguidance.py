"""JSON Schema -> LLGuidance grammar (compact JSON, or a one-line refusal) and its token matcher."""

from __future__ import annotations

import copy
import json
import re
from typing import TYPE_CHECKING, Any

import llguidance as llg
import numpy as np
from loupe.core.constrain.base import DEFAULT_LAYOUT, LAYOUTS, REFUSAL_PREFIX
from loupe.core.constrain.prepare import for_grammar
from loupe.core.constrain.relax import children, relax
from loupe.core.constrain.standard import for_grammar as in_standard_terms
from loupe.core.errors import ConstraintError
from loupe.core.schema.formats import rewrite_schemas

if TYPE_CHECKING:
    from llguidance import LLTokenizer

# fixed separators (loupe.core.constrain.base.LAYOUTS), no free whitespace, which random and small models loop on
JSON_OPTIONS: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": LAYOUTS[DEFAULT_LAYOUT][0],
    "key_separator": LAYOUTS[DEFAULT_LAYOUT][1],
}
REFUSAL_MAX_CHARS = 300
# a number's bounds leave the grammar so that exponent form (1e-06) stays writable: LLGuidance's range regex has none
EXPONENT_NOTE = "number bounds enforced after decoding only, so exponent form such as 1e-06 stays allowed"
# formats whose LLGuidance regex is a wider shape than the standard (29 February in any year, leap seconds at any
# minute, labels without Punycode checks): the grammar keeps the shape, the format checker after decoding the rest
LOOSE_FORMATS = ("date", "date-time", "time", "hostname")
FORMAT_NOTE = "format checked in full after decoding only (the grammar admits its shape)"


def grammar_for(schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> str:
    """The Lark grammar text: the schema's JSON, or (if allowed) `REFUSE: <one line>`."""
    if schema is True:
        schema = {}
    if schema is False:
        if not allow_refusal:
            raise ConstraintError("the schema `false` admits no output at all")
        body = ""
    else:
        spec = in_standard_terms(schema)  # ECMA-262 patterns, RFC formats (loupe.core.constrain.standard)
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

    def forced_tokens(self) -> list[int]:
        """See `Matcher.forced_tokens`."""
        return list(self._m.compute_ff_tokens())

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
    """A grammar checked against one tokenizer; `relaxed` lists what only post-validation enforces."""

    def __init__(self, tokenizer: LLTokenizer, source: str, relaxed: tuple[str, ...] = ()) -> None:
        self._tokenizer = tokenizer
        self.source = source
        self.relaxed = relaxed

    def matcher(self) -> LLGuidanceMatcher:
        """A fresh matcher (grammar construction is ~1 ms)."""
        m = llg.LLMatcher(self._tokenizer, self.source, log_level=0)
        if m.is_error():
            raise ConstraintError(f"cannot compile the schema for decoding: {_first_lines(m.get_error())}")
        return LLGuidanceMatcher(m)


def _problem(source: str, tokenizer: LLTokenizer | None) -> str | None:
    is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(source, tokenizer)
    return _first_lines(messages[0] if messages else "") if is_error else None


def plan(
    schema: dict[str, Any] | bool, tokenizer: LLTokenizer | None = None, *, allow_refusal: bool = True
) -> tuple[str, tuple[str, ...]]:
    """The grammar to decode with, and what it leaves to post-validation.

    Strict first. If LLGuidance refuses, retry with its `lenient` option (unimplemented keywords such as
    `not` are ignored) and `coerce_one_of` (oneOf decoded as anyOf); if it still refuses, loosen the
    offending subschemas to `{}` (loupe.core.constrain.relax). Raises ConstraintError only when even that fails.
    The schema is first read as its draft says and widened where LLGuidance would refuse what it allows
    (loupe.core.constrain.prepare); those widenings are listed too.
    """
    schema, bounds = for_grammar(schema)
    bound_notes: tuple[str, ...] = (f"{EXPONENT_NOTE}: {', '.join(bounds)}",) if bounds else ()  # one note
    shaped = [f"{fmt} at {pointer or '/'}" for pointer, fmt in sorted(set(_loose_formats(schema)))]
    if shaped:
        bound_notes += (f"{FORMAT_NOTE}: {', '.join(shaped)}",)
    source = grammar_for(schema, allow_refusal=allow_refusal)
    strict_problem = _problem(source, tokenizer)
    if strict_problem is None:
        return source, bound_notes
    if isinstance(schema, bool):
        raise ConstraintError(f"cannot compile the schema for decoding: {strict_problem}")
    loose, widened = widen_property_counts(schema)
    loose["x-guidance"] = {"lenient": True, "coerce_one_of": True, **(schema.get("x-guidance") or {})}
    widened_notes = (*bound_notes, *(f"enforced after decoding only: {p}" for p in widened))
    source = grammar_for(loose, allow_refusal=allow_refusal)
    if _problem(source, tokenizer) is None:
        return source, (f"enforced after decoding only: {strict_problem}", *widened_notes)

    def compiles(candidate: Any) -> bool:
        return _problem(grammar_for(candidate, allow_refusal=allow_refusal), tokenizer) is None

    relaxed_schema, pointers = relax(loose, compiles)
    if not compiles(relaxed_schema):
        raise ConstraintError(f"cannot compile the schema for decoding: {strict_problem}")
    notes = tuple(f"not enforced while decoding (checked after): {p}" for p in pointers)
    return grammar_for(relaxed_schema, allow_refusal=allow_refusal), (f"{strict_problem}", *widened_notes, *notes)


def _loose_formats(schema: Any) -> list[tuple[str, str]]:
    """(pointer, format) of every subschema whose `format` the grammar only approximates (LOOSE_FORMATS)."""
    found: list[tuple[str, str]] = []

    def note(node: dict[str, Any], pointer: str) -> dict[str, Any]:
        if node.get("format") in LOOSE_FORMATS:
            found.append((pointer, str(node["format"])))
        return node

    rewrite_schemas(schema, note)
    return found


def widen_property_counts(schema: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of `schema` without the minProperties/maxProperties LLGuidance cannot express (it supports them only
    when every listed property is required; its lenient mode then demands an unlisted key instead), and the JSON
    Pointers of what was dropped. Dropping a bound only widens: the grammar never refuses a valid instance, and
    validation after decoding still enforces it."""
    out = copy.deepcopy(schema)
    dropped: list[str] = []
    stack: list[str] = [""]
    while stack:
        pointer = stack.pop()
        node = _resolve(out, pointer)
        if isinstance(node, dict):
            listed = set(node.get("properties") or {}) if isinstance(node.get("properties"), dict) else set()
            required = set(node.get("required") or []) if isinstance(node.get("required"), list) else set()
            if listed - required:
                for key in ("minProperties", "maxProperties"):
                    if key in node:
                        del node[key]
                        dropped.append(f"{pointer}/{key}")
        stack.extend(children(node, pointer))
    return out, dropped


def _resolve(root: Any, pointer: str) -> Any:
    node = root
    for part in pointer.split("/")[1:]:
        key = part.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


class LLGuidanceCompiler:
    """Compiles schemas with LLGuidance for one tokenizer (the recommended engine)."""

    name = "llguidance"

    def __init__(self, tokenizer: LLTokenizer) -> None:
        self.tokenizer = tokenizer

    def compile(self, schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> LLGuidanceConstraint:
        """Compile `schema` (raises ConstraintError naming the unsupported part)."""
        source, relaxed = plan(schema, self.tokenizer, allow_refusal=allow_refusal)
        return LLGuidanceConstraint(self.tokenizer, source, relaxed)


def _first_lines(message: str) -> str:
    """LLGuidance errors quote the whole grammar; keep the lines that say what is wrong."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    keep = [re.sub(r"^at \d+\(\d+\): ", "", lines[0])] if lines else ["unknown error"]
    keep += [ln for ln in lines[1:] if ln.startswith("error:")]
    return " ".join(keep)


def relaxation_notes(schema: dict[str, Any] | bool) -> tuple[str, ...]:
    """What of `schema` is enforced only after decoding (empty when the grammar enforces all of it)."""
    return plan(schema, None)[1]
