"""Whether a JSON Pointer (segments may be `*`, one list item) can name a place in what a JSON Schema allows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_BRANCHES = ("allOf", "anyOf", "oneOf")


def _unescape(segment: str) -> str:
    return segment.replace("~1", "/").replace("~0", "~")


def _ref(root: Any, ref: str) -> Any:
    """The subschema a local `$ref` names; True (anything) when it cannot be followed here."""
    if not ref.startswith("#"):
        return True
    node = root
    for part in filter(None, ref[1:].split("/")):
        key = _unescape(part)
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return True
    return node


def _alternatives(root: Any, node: Any, seen: frozenset[int] = frozenset()) -> Iterator[Any]:
    """The node and every subschema it combines ($ref, allOf/anyOf/oneOf), each once."""
    if id(node) in seen:
        return
    yield node
    if not isinstance(node, dict):
        return
    seen = seen | {id(node)}
    if isinstance(node.get("$ref"), str):
        yield from _alternatives(root, _ref(root, node["$ref"]), seen)
    for branch in _BRANCHES:
        for sub in node.get(branch, []) if isinstance(node.get(branch), list) else []:
            yield from _alternatives(root, sub, seen)


_STRUCTURE = (
    "type",
    "items",
    "prefixItems",
    "properties",
    "patternProperties",
    "additionalProperties",
    "$ref",
    "enum",
    "const",
    *_BRANCHES,
)


def _open(node: Any) -> bool:
    """True for a schema that allows anything (true, {}, or only annotations such as a description)."""
    return node is True or (isinstance(node, dict) and not any(k in node for k in _STRUCTURE))


def _allows(node: Any, kind: str, keywords: tuple[str, ...]) -> bool:
    """Whether the node itself (not its branches) may be a `kind` ("array" or "object")."""
    if not isinstance(node, dict):
        return False
    types = node.get("type")
    if types is None:
        return any(k in node for k in keywords)  # no type: only its own keywords make it one (else branches say)
    return types == kind or (isinstance(types, list) and kind in types)


def _items(node: Any) -> list[Any]:
    """What one list item may be, or [] where the node allows no list."""
    if _open(node):
        return [True]
    if not _allows(node, "array", ("items", "prefixItems")):
        return []
    return [s for s in [*node.get("prefixItems", []), node.get("items", True)] if s is not False]


def _member(node: Any, key: str) -> list[Any]:
    """What the value under an object key may be, or [] where the node allows no such key."""
    if _open(node):
        return [True]
    if not _allows(node, "object", ("properties", "patternProperties", "additionalProperties")):
        return []
    if key in node.get("properties", {}):
        return [node["properties"][key]]
    subs = [s for p, s in node.get("patternProperties", {}).items() if re.search(p, key)]
    if subs:
        return subs
    extra = node.get("additionalProperties", True)
    return [] if extra is False else [extra]


def pointer_problem(schema: Any, pointer: str) -> str | None:
    """Why a `*` in `pointer` stands where the schema allows no list (or nothing at all), or None.

    Only what the schema says is followed: properties, patternProperties, additionalProperties, items,
    prefixItems, local $ref and allOf/anyOf/oneOf; a part it cannot follow counts as allowing anything."""
    nodes: list[Any] = [schema]
    walked = ""
    segments = pointer.split("/")[1:]
    for i, raw in enumerate(segments):
        key = _unescape(raw)
        options = [alt for node in nodes for alt in _alternatives(schema, node)]
        if key == "*":
            nxt = [s for alt in options for s in _items(alt)]
            if not nxt:
                return f"'*' stands for a list item, but the schema has no list at {walked or '/'}"
        else:
            nxt = [s for alt in options for s in _member(alt, key)]
            if key.isdigit():
                nxt += [s for alt in options for s in _items(alt)]
            if not nxt and "*" not in segments[i + 1 :]:
                return None  # a concrete key the schema does not know never matches: refused only with a `*`
            if not nxt:
                return f"'*' stands for a list item, but the schema has nothing at {walked}/{raw}"
        nodes = nxt
        walked += "/" + raw
    return None
