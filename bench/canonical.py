"""Put a JSON instance's object keys in the order its schema lists them (the order Loupe decodes in).

Loupe's grammars emit properties in the schema's `properties` order, so a valid instance written
with another key order is the same value in a form the decoder would produce differently. The
coverage benchmark canonicalises valid instances this way before feeding them token by token.
Likewise a `const` or `enum` value is written as the schema writes it (its key order, `1` for `1.0`),
and an integral number as an integer (`1e308` as its 309 digits).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from jsonschema import Draft202012Validator


def _resolve(schema: Any, root: Any, depth: int = 0) -> Any:
    """Follow a local `$ref` (`#/...`), leaving other refs as they are."""
    while (
        isinstance(schema, dict)
        and isinstance(schema.get("$ref"), str)
        and schema["$ref"].startswith("#")
        and depth < 32
    ):
        node = root
        for part in schema["$ref"][1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, list):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                return schema
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        merged = {**node, **rest} if rest and isinstance(node, dict) else node
        if merged is not node and isinstance(node.get("properties"), dict) and isinstance(rest.get("properties"), dict):
            # the node's own properties first, then the $ref's: Loupe hands LLGuidance every node with `properties`
            # before its applicators (loupe.core.constrain.prepare), and LLGuidance lists them in that order
            merged["properties"] = {**rest["properties"], **node["properties"]}
        schema = merged
        depth += 1
    return schema


def _valid(instance: Any, schema: Any, root: Any) -> bool:
    try:
        merged = (
            {**schema, "$defs": root.get("$defs", {}), "definitions": root.get("definitions", {})}
            if isinstance(schema, dict) and isinstance(root, dict)
            else schema
        )
        return Draft202012Validator(merged).is_valid(instance)
    except Exception:
        return False


def _branches(schema: dict[str, Any], instance: Any, root: Any) -> list[Any]:
    """allOf parts, then the first anyOf/oneOf branch the instance satisfies."""
    parts: list[Any] = list(schema.get("allOf", []))
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            match = next((o for o in options if _valid(instance, _resolve(o, root), root)), None)
            if match is not None:
                parts.append(match)
    return parts


def _property_order(schema: Any, instance: Any, root: Any, seen: int = 0) -> list[tuple[str, Any]]:
    """(name, subschema) in decoding order, through $ref, allOf and the matching anyOf/oneOf branch."""
    schema = _resolve(schema, root)
    if not isinstance(schema, dict) or seen > 16:
        return []
    order = list((schema.get("properties") or {}).items())
    for part in _branches(schema, instance, root):
        order += _property_order(part, instance, root, seen + 1)
    return order


def canonical(instance: Any, schema: Any, root: Any | None = None) -> Any:
    """`instance` with every object's keys in its schema's property order (others after), integral floats as ints."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if isinstance(schema, dict):  # a const/enum value the instance equals: the grammar writes it as the schema does
        listed = ([schema["const"]] if "const" in schema else []) + list(schema.get("enum") or [])
        same = next((v for v in listed if _equal(v, instance)), _MISSING)
        if same is not _MISSING:
            instance = same  # its key order; numbers still as the grammar writes them (-2.0 as -2)
    if isinstance(instance, dict):
        order = _property_order(schema, instance, root)
        subs: dict[str, Any] = {}
        for name, sub in order:
            subs.setdefault(name, sub)
        keys = [n for n in subs if n in instance] + [k for k in instance if k not in subs]
        out = {}
        for k in keys:
            out[k] = canonical(instance[k], _subschema_for(schema, k, subs, root), root)
        return out
    if isinstance(instance, float) and instance.is_integer():  # 0.0 and 0 are the same JSON number; the
        return int(Decimal(repr(instance)))  # digits of the number as written (1e308 is 10**308, exactly)
    if isinstance(instance, list):
        node = schema if isinstance(schema, dict) else {}
        if "items" not in node and "prefixItems" not in node:  # the items an allOf part or matching branch gives
            parts = [_resolve(p, root) for p in _branches(node, instance, root)]
            node = next((p for p in parts if isinstance(p, dict) and ("items" in p or "prefixItems" in p)), node)
        prefix = node.get("prefixItems") or (node.get("items") if isinstance(node.get("items"), list) else [])
        rest = node.get("items") if isinstance(node.get("items"), dict) else node.get("additionalItems", {})
        return [canonical(v, prefix[i] if i < len(prefix) else rest, root) for i, v in enumerate(instance)]
    return instance


_MISSING = object()


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: objects by value whatever their key order, 1 == 1.0, but true is no number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _subschema_for(schema: Any, key: str, subs: dict[str, Any], root: Any) -> Any:
    if key in subs:
        return subs[key]
    if isinstance(schema, dict):
        for pattern, sub in (schema.get("patternProperties") or {}).items():
            try:
                if re.search(pattern, key):
                    return sub
            except re.error:
                continue
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return extra
    return {}
