"""Writes tests/serve/openai_schemas.json: the component schemas of OpenAI's published OpenAPI spec that a chat
completion and a streamed chunk must match, so the tests validate against them with no network.

    python -m tests.serve.openai_spec ../shared/data/openai/openapi.json.gz
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOTS = ("CreateChatCompletionResponse", "CreateChatCompletionStreamResponse")
OUT = Path(__file__).with_name("openai_schemas.json")


def extract(raw: bytes, source: str) -> dict[str, Any]:
    """The ROOTS and every component schema they reference, $refs rewritten to #/$defs/NAME."""
    spec = json.loads(gzip.decompress(raw))
    components = spec["components"]["schemas"]
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.split("/")[-1] not in names:
                names.add(ref.split("/")[-1])
                visit(components[ref.split("/")[-1]])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    for root in ROOTS:
        names.add(root)
        visit(components[root])

    def rebase(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: "#/$defs/" + v.split("/")[-1] if k == "$ref" else rebase(v) for k, v in node.items()}
        return [rebase(v) for v in node] if isinstance(node, list) else node

    info = spec["info"]
    return {
        "$comment": (
            f"OpenAI's published component schemas for chat completions, copied unchanged (only $refs rewritten from "
            f"#/components/schemas/NAME to #/$defs/NAME) from {info['title']} version {info['version']} (OpenAPI "
            f"{spec['openapi']}), {source}, sha256 of the gzip {hashlib.sha256(raw).hexdigest()}: "
            f"{', '.join(ROOTS)} and every schema they reference. Written by tests/serve/openai_spec.py."
        ),
        "$defs": {name: rebase(components[name]) for name in sorted(names)},
    }


def main(argv: list[str]) -> None:
    source = argv[0] if argv else "../shared/data/openai/openapi.json.gz"
    schemas = extract(Path(source).read_bytes(), "../shared/data/openai/openapi.json.gz")
    OUT.write_text(json.dumps(schemas, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
