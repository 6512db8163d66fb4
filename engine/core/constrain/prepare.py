"""The schema as the grammar engine is given it: read as its declared draft says, widened where LLGuidance would
otherwise refuse instances the schema allows (never narrowed); what only validation after decoding enforces is named.

- Draft-04/06/07 ignore every keyword beside `$ref`; LLGuidance would intersect them (`{"type": "string", "$ref": ...}`
  refused the object the `$ref` allows), so they are removed from the grammar's copy. 2019-09/2020-12 apply them.
- LLGuidance writes a bounded `number` as a plain decimal (its range regex has no exponent), so `1e-06` was refused
  under `minimum: 0`; the bounds leave the grammar and validation after decoding enforces them.
- LLGuidance fixes the order of object keys by where `properties` stands among a node's keywords; `properties` goes
  first so an object is decoded in the order its own `properties` list (what the prompt shows), then its branches'.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
from jsonschema.validators import validator_for
from loupe.core.constrain.relax import children, get

# drafts where `$ref` overrides its siblings
_REF_ALONE = (
    jsonschema.Draft3Validator,
    jsonschema.Draft4Validator,
    jsonschema.Draft6Validator,
    jsonschema.Draft7Validator,
)
# what stays beside such a `$ref`: the definitions other `$ref`s point into (never constraints themselves)
_KEPT_BESIDE_REF = ("$ref", "definitions", "$defs", "$schema", "x-guidance")
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_APPLICATORS = ("$ref", "allOf", "anyOf", "oneOf", "if", "then", "else", "dependentSchemas", "dependencies")


def ref_overrides_siblings(schema: Any) -> bool:
    """Whether `schema` declares a draft (04, 06, 07, or 03) in which keywords beside `$ref` are ignored."""
    if not isinstance(schema, dict) or not isinstance(schema.get("$schema"), str):
        return False
    return validator_for(schema, default=jsonschema.Draft202012Validator) in _REF_ALONE


def _may_be_fractional(node: dict[str, Any]) -> bool:
    """Whether the node admits non-integral numbers whose bounds would refuse exponent form. Not with `multipleOf`:
    LLGuidance writes those as decimals whatever the bounds, so dropping the bounds would widen for nothing."""
    if "multipleOf" in node:
        return False
    kind = node.get("type")
    if kind is None:
        return any(k in node for k in _BOUNDS) and "enum" not in node and "const" not in node
    kinds = kind if isinstance(kind, list) else [kind]
    return "number" in kinds


def for_grammar(schema: Any) -> tuple[Any, list[str]]:
    """(the schema LLGuidance compiles, the JSON Pointers of keywords only validation enforces)."""
    if not isinstance(schema, dict):
        return schema, []
    out = copy.deepcopy(schema)
    ref_alone = ref_overrides_siblings(schema)
    widened: list[str] = []
    stack, seen = [""], set()
    while stack:
        pointer = stack.pop()
        if pointer in seen:
            continue
        seen.add(pointer)
        node = get(out, pointer)
        if not isinstance(node, dict):
            continue
        if ref_alone and isinstance(node.get("$ref"), str):
            for key in [k for k in node if k not in _KEPT_BESIDE_REF]:
                del node[key]
        if _may_be_fractional(node):
            for key in _BOUNDS:
                if key in node:
                    del node[key]
                    widened.append(f"{pointer}/{key}")
        if "properties" in node and any(k in node for k in _APPLICATORS):
            rest = {k: v for k, v in node.items() if k != "properties"}
            properties = node["properties"]
            node.clear()
            node.update({"properties": properties, **rest})
        stack.extend(children(node, pointer))
    return out, widened
