"""Tool calling, strict schemas, stop sequences and the schema a prompt carries, for the chat completions route.

Loupe never generates free text, so a tool call is decoded like a response_format: under the function's
`parameters` schema (several functions: under `{"name": <one of them>, "arguments": <its parameters>}`), and
answered as OpenAI's `tool_calls`.
"""

from __future__ import annotations

import codecs
import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from loupe.serve import schemas as s
from loupe.serve.errors import bad_request

# fields of a chat request that do not change the answer: taken and not used
INERT = frozenset({"user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"})
_OBJECT_KEYS = ("properties", "required", "additionalProperties")


@dataclass(frozen=True)
class ToolPlan:
    """How the answer becomes a tool call: the functions it may call; with several, the answer is an envelope
    `{"name": ..., "arguments": {...}}`."""

    names: tuple[str, ...]

    @property
    def enveloped(self) -> bool:
        return len(self.names) > 1


def refuse_unsupported(req: s.ChatRequest) -> None:
    """A 400 naming the first parameter Loupe would otherwise have to ignore."""
    for name in sorted(set(req.model_extra or {}) - INERT):
        raise bad_request(
            f"unsupported parameter {name[:64]!r}: Loupe's chat completions do not take it",
            param=name[:64],
            code="unsupported_parameter",
        )
    if req.presence_penalty:
        raise bad_request(
            "presence_penalty is not supported (only 0)", param="presence_penalty", code="unsupported_parameter"
        )
    if req.frequency_penalty:
        raise bad_request(
            "frequency_penalty is not supported (only 0)", param="frequency_penalty", code="unsupported_parameter"
        )
    if req.logit_bias:
        raise bad_request("logit_bias is not supported", param="logit_bias", code="unsupported_parameter")
    if req.top_logprobs:
        raise bad_request(
            "top_logprobs is not supported (only 0): Loupe keeps the chosen token's probability only",
            param="top_logprobs",
            code="unsupported_parameter",
        )
    if req.top_p is not None and req.top_p < 1 and (req.temperature or 0) > 0:
        # greedy decoding (temperature 0) picks the most likely allowed token, always inside any nucleus
        raise bad_request(
            "top_p < 1 is supported only with temperature 0 (greedy decoding, which it does not change)",
            param="top_p",
            code="unsupported_parameter",
        )


def stops(req: s.ChatRequest) -> tuple[str, ...]:
    """The request's stop sequences (at most 4, as OpenAI)."""
    given = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(given) > 4:
        raise bad_request(f"stop takes at most 4 sequences, got {len(given)}", param="stop")
    return tuple(given)


def _objects(node: Any, pointer: str = "") -> Iterator[tuple[dict[str, Any], str]]:
    """Every object schema in `node` (with its JSON Pointer), subschemas before the schemas that hold them."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _objects(item, f"{pointer}/{i}")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
            for name, sub in value.items():
                yield from _objects(sub, f"{pointer}/{key}/{_escape(name)}")
        elif key in ("items", "prefixItems", "anyOf", "oneOf", "allOf", "not", "if", "then", "else"):
            yield from _objects(value, f"{pointer}/{key}")
    if node.get("type") == "object" or "properties" in node:
        yield node, pointer or "/"


def close_strict(schema: Any, param: str) -> tuple[Any, list[str]]:
    """A strict schema closed as OpenAI's strict mode requires: every object schema with `additionalProperties:
    false` and all its properties required. Returns the copy and the JSON Pointers of the objects changed; a 400
    for an object whose additionalProperties is a schema (strict mode cannot close it)."""
    closed = copy.deepcopy(schema)
    changed: list[str] = []
    for node, pointer in _objects(closed):
        extra = node.get("additionalProperties", True)
        if isinstance(extra, dict) and extra:
            raise bad_request(
                f"strict schemas need additionalProperties: false on every object; at {pointer} it is a schema "
                "(drop strict, or list the properties)",
                param=param,
                code="invalid_schema",
            )
        props = list(node.get("properties", {}))
        if extra is not False or sorted(node.get("required", [])) != sorted(props):
            node["additionalProperties"] = False
            node["required"] = props
            changed.append(pointer)
    return closed, changed


def close_unsaid(schema: Any) -> tuple[Any, list[str]]:
    """The schema as decoded: an object that lists `properties` and says nothing of other keys (no
    additionalProperties, no patternProperties) gets no other keys. The answer still matches the schema as given;
    the model just never invents keys (a small model otherwise may, until max_tokens)."""
    closed = copy.deepcopy(schema)
    changed = []
    for node, pointer in _objects(closed):
        if "properties" in node and "additionalProperties" not in node and "patternProperties" not in node:
            node["additionalProperties"] = False
            changed.append(pointer)
    return closed, changed


def strict_note(where: str, changed: list[str]) -> str:
    """The note a reply carries when a strict schema was closed."""
    return (
        f"{where} is strict: closed as OpenAI's strict mode requires (additionalProperties: false, every property "
        f"required) at {', '.join(changed[:8])}{' ...' if len(changed) > 8 else ''}"
    )


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def tool_request(req: s.ChatRequest) -> tuple[list[s.Tool], str] | None:
    """The tools the answer must call (and why), or None when the answer is content (no tools, tool_choice none).
    A 400 for a tool_choice that names no given tool, or `auto` beside a response_format."""
    tools, choice = req.tools or [], req.tool_choice
    if not tools:
        if choice not in (None, "none"):
            raise bad_request("tool_choice is set but no tools are given", param="tool_choice")
        return None
    names = [t.function.name for t in tools]
    if len(set(names)) != len(names):
        raise bad_request("two tools have the same function name", param="tools")
    if choice == "none":
        return None
    if isinstance(choice, s.NamedToolChoice):
        if choice.function.name not in names:
            raise bad_request(
                f"tool_choice names function {choice.function.name!r}, which is not among the tools "
                f"({', '.join(names)})",
                param="tool_choice",
            )
        return [t for t in tools if t.function.name == choice.function.name], "tool_choice names the function"
    fmt = req.response_format
    if choice in (None, "auto") and fmt is not None and fmt.type != "text":
        raise bad_request(
            f"tools with tool_choice {choice or 'auto'!r} and a response_format: Loupe cannot let the model choose "
            "between the two; set tool_choice to 'required' or a function (a tool call is the answer) or 'none' "
            "(the response_format is)",
            param="tool_choice",
            code="tool_choice_conflict",
        )
    why = (
        "tool_choice required"
        if choice == "required"
        else "tool_choice auto is answered as required (Loupe does not generate free text)"
    )
    return tools, why


def parameters_of(tool: s.Tool, index: int) -> tuple[Any, list[str]]:
    """A function's parameters schema (OpenAI's default: no arguments), closed when the function is strict."""
    params: Any = tool.function.parameters or {"type": "object", "properties": {}}
    if tool.function.strict:
        params, changed = close_strict(params, f"tools[{index}].function.parameters")
        if changed:
            return params, [strict_note(f"tools[{index}].function.parameters", changed)]
    return params, []


def envelope(tools: list[s.Tool], params: list[Any]) -> dict[str, Any]:
    """One schema for a call to any of `tools`: {"name": <const>, "arguments": <its parameters>} per tool, each
    tool's parameters under $defs (their local $refs rewritten to point there)."""
    defs, options = {}, []
    for i, (tool, p) in enumerate(zip(tools, params, strict=True)):
        key = f"tool{i}"
        defs[key] = _rebase(p, f"#/$defs/{key}")
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.function.name}, "arguments": {"$ref": f"#/$defs/{key}"}},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return {"anyOf": options, "$defs": defs}


def _rebase(node: Any, base: str) -> Any:
    if isinstance(node, list):
        return [_rebase(n, base) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _rebase(v, base) for k, v in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
        out["$ref"] = base + ref[1:]
    return out


def tool_prompt(tools: list[s.Tool], schema: Any) -> str:
    """The instruction that ends the prompt of a tool call."""
    compact = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    if len(tools) == 1:
        f = tools[0].function
        what = f" ({f.description})" if f.description else ""
        return (
            f"Call the function {f.name}{what}. Answer with its arguments: one JSON object that matches this "
            f"JSON Schema: {compact}"
        )
    listed = "\n".join(
        f"- {t.function.name}" + (f": {t.function.description}" if t.function.description else "") for t in tools
    )
    return (
        f'Call one of these functions:\n{listed}\nAnswer with one JSON object, {{"name": <the function>, '
        f'"arguments": <its arguments>}}, that matches this JSON Schema: {compact}'
    )


def call_of(text: str, plan: ToolPlan) -> tuple[str, str] | None:
    """(function name, arguments JSON) of an answer; None when an enveloped answer does not parse (cut short)."""
    if not plan.enveloped:
        return plan.names[0], text
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("name") not in plan.names:
        return None
    return data["name"], json.dumps(data.get("arguments"), ensure_ascii=False)


_FENCE = re.compile(r"(?m)^[ \t]*\{|```(?:json)?[ \t]*\n[ \t]*\{")
MAX_CANDIDATES = 32


def schema_in(text: str) -> dict[str, Any] | None:
    """The first JSON Schema written out in a prompt (an object at the start of a line or a ```json fence that has
    `properties` or `$schema`, or `type` with a JSON type), as clients that prompt for JSON write it (instructor's
    MD_JSON mode)."""
    decoder = json.JSONDecoder()
    for n, m in enumerate(_FENCE.finditer(text)):
        if n >= MAX_CANDIDATES:
            break
        try:
            value, _ = decoder.raw_decode(text, m.end() - 1)
        except ValueError:
            continue
        if isinstance(value, dict) and (
            "properties" in value or "$schema" in value or value.get("type") in ("object", "array")
        ):
            return value
    return None


class StopScanner:
    """Finds the first stop sequence in text that arrives in pieces: `feed` returns the text that can be passed on
    (never any part of a stop sequence, which may still be completing) and whether a stop was reached."""

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.stop = stop
        self.held = ""
        self.hit = False

    def feed(self, text: str) -> str:
        if self.hit:
            return ""
        self.held += text
        found = [i for i in (self.held.find(x) for x in self.stop) if i >= 0]
        if found:
            self.hit = True
            out, self.held = self.held[: min(found)], ""
            return out
        keep = max((k for x in self.stop for k in range(1, len(x)) if self.held.endswith(x[:k])), default=0)
        out = self.held[: len(self.held) - keep]
        self.held = self.held[len(out) :]
        return out

    def flush(self) -> str:
        out, self.held = ("" if self.hit else self.held), ""
        return out


def cut_at_stop(text: str, stop: tuple[str, ...]) -> int | None:
    """Where the first stop sequence starts in `text` (None: none does)."""
    found = [i for i in (text.find(x) for x in stop) if i >= 0]
    return min(found) if found else None


def utf8_decoder() -> codecs.IncrementalDecoder:
    """Bytes of tokens to text, a character split across tokens kept until it is whole."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace")
