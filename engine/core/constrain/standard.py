"""The schema LLGuidance compiles, rewritten where it reads JSON Schema otherwise than the standard does.

- `pattern` and `patternProperties` regexes are ECMA-262's: `\\s` holds U+FEFF and the other ECMA white space
  (LLGuidance's is Unicode's White_Space), `\\cX` is a control character, a `[` inside a class is a literal.
  One difference is left to validation after decoding, for speed: LLGuidance's `.` also takes `\\r`, U+2028 and
  U+2029, which ECMA's does not; spelled as ECMA's class, `^.{1,1000}$` cost 12 times as much per token mask
  (767 against 61 µs on a 49k vocabulary), for characters a model hardly ever writes.
- `format: email` and `format: ipv6` are LLGuidance regexes narrower than their RFCs (no quoted local part, no
  address literal in IPv6, no IPv6 with an embedded IPv4); the grammar gets the RFCs' own regexes as a `pattern`
  instead (loupe.core.schema.formats), the same ones validation checks.

Only keywords inside schema objects change, never the structure, so a JSON Pointer into the rewritten schema
names the same place in the task's.
"""

from __future__ import annotations

from typing import Any

from loupe.core.schema.formats import GRAMMAR_FORMATS, rewrite_schemas, translate


def _node(node: dict[str, Any], pointer: str) -> dict[str, Any]:
    if isinstance(node.get("pattern"), str):
        node["pattern"] = translate(node["pattern"], grammar=True)
    patterns = node.get("patternProperties")
    if isinstance(patterns, dict):
        renamed = {translate(k, grammar=True): v for k, v in patterns.items()}
        if len(renamed) == len(patterns):  # two spellings of one regex: keep the task's (never in practice)
            node["patternProperties"] = renamed
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in GRAMMAR_FORMATS:
        regex = f"^{GRAMMAR_FORMATS[fmt]}$"
        del node["format"]
        if isinstance(node.get("pattern"), str):  # both hold: the format's regex joins through allOf
            node["allOf"] = [*(node.get("allOf") or []), {"pattern": regex}]
        else:
            node["pattern"] = regex
    return node


def for_grammar(schema: Any) -> Any:
    """`schema` as LLGuidance must read it to enforce what the standard says (a copy; booleans as they are)."""
    return rewrite_schemas(schema, _node)
