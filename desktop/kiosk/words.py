"""A verdict's reason in an operator's words: the schema's titles instead of JSON Pointers, symbols instead of
operators (the judgement itself, stored and published, keeps the engine's exact text)."""

from __future__ import annotations

import re
from typing import Any

POINTER = re.compile(r"(?<![\w/])(/(?:[A-Za-z0-9_*~.\-]+)(?:/[A-Za-z0-9_*~.\-]+)*)")
SYMBOLS = {">=": "≥", "<=": "≤", "!=": "≠", "==": "="}


def humanize(key: str) -> str:
    """`box_2d` -> "Box 2d", `unitPrice` -> "Unit price"."""
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", key).replace("_", " ").replace("-", " ").strip()
    return (words[:1].upper() + words[1:].lower()) if words else key


def field_name(pointer: str, schema: dict[str, Any] | None) -> str:
    """The schema's `title`s along a JSON Pointer (a humanized key where there is none), joined with " › ";
    `*` (any item) is left out, an item index reads "#n" (counting from 1)."""
    node: Any = schema or {}
    names: list[str] = []
    for raw in pointer.strip("/").split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict):
            node = {}
        if key == "*" or key.isdigit():
            node = node.get("items") if isinstance(node.get("items"), dict) else node.get("additionalProperties")
            if key.isdigit() and names:
                names[-1] = f"{names[-1]} #{int(key) + 1}"
            continue
        props = node.get("properties")
        node = props.get(key) if isinstance(props, dict) else None
        title = node.get("title") if isinstance(node, dict) else None
        names.append(title if isinstance(title, str) and title else humanize(key))
    return " › ".join(names) or "the result"


def _in_schema(pointer: str, schema: dict[str, Any] | None) -> bool:
    """Whether the pointer's first key is one of the schema's top-level properties (else it is not a pointer)."""
    props = (schema or {}).get("properties")
    first = pointer.strip("/").split("/")[0].replace("~1", "/").replace("~0", "~")
    return isinstance(props, dict) and first in props


def operator_reason(reason: str, schema: dict[str, Any] | None) -> str:
    """`reason` from loupe.core.verdict with pointers as field names and plain words:
    "unsure FAIL: /defects/*/severity >= 3 (5), read with confidence 0.24 < 0.60" becomes
    "FAIL? the model is unsure — Defects › Severity ≥ 3 (read: 5), confidence 0.24, below 0.60"."""
    text = reason
    unsure = re.match(r"unsure (PASS|FAIL|REVIEW): ", text)
    if unsure:
        text = text[unsure.end() :]
    text = re.sub(r", read with confidence (\S+) < (\S+)$", r", confidence \1, below \2", text)
    text = re.sub(r"^confidence (\S+) < (\S+)$", r"low confidence: \1, below \2", text)
    text = re.sub(
        r" (>=|<=|!=|==|>|<) (.+?) \((.*)\)(?=,|$)", lambda m: f" {SYMBOLS.get(m[1], m[1])} {m[2]} (read: {m[3]})", text
    )
    text = re.sub(r"\((>=|<=|!=|==|>|<) ", lambda m: f"({SYMBOLS.get(m[1], m[1])} ", text)
    if not text.startswith("status "):  # an error message may hold file paths: left as it is
        text = POINTER.sub(lambda m: field_name(m[1], schema) if _in_schema(m[1], schema) else m[1], text)
    if text == "no rule matched":
        text = "every check passed"
    if unsure:
        text = f"{unsure[1]}? the model is unsure — {text}"
    return text
