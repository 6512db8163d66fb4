"""When a schema has parts the grammar engine cannot express, loosen only those parts (to `{}`).

What is loosened is no longer enforced while decoding, only by validation afterwards (with the
bounded retry), and every loosened JSON Pointer is reported so the user is told.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

# keywords whose value is one subschema / a map of subschemas / a list of subschemas
_ONE = (
    "additionalProperties",
    "items",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "additionalItems",
    "not",
    "if",
    "then",
    "else",
)
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")

MAX_ATTEMPTS = 400


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def children(node: Any, pointer: str) -> Iterator[str]:
    """JSON Pointers of the direct subschemas of the schema at `pointer`."""
    if not isinstance(node, dict):
        return
    for key in _ONE:
        if isinstance(node.get(key), dict):
            yield f"{pointer}/{key}"
    for key in _MAP:
        if isinstance(node.get(key), dict):
            for name, sub in node[key].items():
                if isinstance(sub, dict | bool):
                    yield f"{pointer}/{key}/{_esc(name)}"
    for key in _LIST:
        if isinstance(node.get(key), list):
            for i, sub in enumerate(node[key]):
                if isinstance(sub, dict | bool):
                    yield f"{pointer}/{key}/{i}"


def _parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def get(schema: Any, pointer: str) -> Any:
    """The subschema at `pointer`."""
    node = schema
    for part in _parts(pointer):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def replaced(schema: Any, pointer: str, value: Any) -> Any:
    """A copy of `schema` with the subschema at `pointer` replaced by `value`."""
    if pointer == "":
        return value
    out = copy.deepcopy(schema)
    *head, last = _parts(pointer)
    node = out
    for part in head:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def relax(schema: Any, compiles: Callable[[Any], bool]) -> tuple[Any, list[str]]:
    """Loosen the fewest, deepest subschemas so that `compiles(result)` holds; returns (schema, pointers).

    Descends from the root: while replacing a child by `{}` makes the whole compile, the culprit is
    inside that child, so look deeper; where no single child helps, loosen the node itself. Repeats
    for schemas with several culprits, within a bounded number of compile attempts.
    """
    attempts = 0

    def ok(candidate: Any) -> bool:
        nonlocal attempts
        attempts += 1
        return compiles(candidate)

    loosened: list[str] = []
    current = schema
    while not ok(current):
        pointer = ""
        while attempts < MAX_ATTEMPTS:
            node = get(current, pointer)
            culprit = next((c for c in children(node, pointer) if ok(replaced(current, c, {}))), None)
            if culprit is None:
                break
            pointer = culprit
        current, what = _loosen_node(current, pointer, ok)
        loosened.append(what)
        if what == "/" or attempts >= MAX_ATTEMPTS:
            break
    return current, loosened


_STRUCTURE = {"type", "$ref", "$defs", "definitions", "$schema", "$id", "id", *_ONE, *_MAP, *_LIST}


def _loosen_node(schema: Any, pointer: str, ok: Callable[[Any], bool]) -> tuple[Any, str]:
    """Drop the one keyword of the node that blocks compiling (e.g. a `pattern`), else the whole node."""
    node = get(schema, pointer)
    if isinstance(node, dict):
        for key in [k for k in node if k not in _STRUCTURE]:
            trial = replaced(schema, pointer, {k: v for k, v in node.items() if k != key})
            if ok(trial):
                return trial, f"{pointer}/{_esc(key)}"
    return replaced(schema, pointer, {}), pointer or "/"
