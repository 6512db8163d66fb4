"""Size limits on the JSON documents users hand Loupe (task files, schemas, API bodies), checked without recursion."""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64  # nesting of a task document (a schema 64 objects deep is far past any real one)
MAX_NODES = 500_000  # values in a task document


def document_problem(doc: Any) -> tuple[str, str] | None:
    """None when `doc` is within MAX_DEPTH and MAX_NODES, else (message, JSON Pointer of where it goes too far);
    iterative, so that no nesting exhausts the stack."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    nodes = 0
    while stack:
        node, pointer, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return (f"more than {MAX_NODES:,} values", "")
        if depth > MAX_DEPTH:
            return (f"nested more than {MAX_DEPTH} levels deep", pointer[:120] + ("..." if len(pointer) > 120 else ""))
        if isinstance(node, dict):
            stack.extend(
                (v, f"{pointer}/{str(k).replace('~', '~0').replace('/', '~1')}", depth + 1) for k, v in node.items()
            )
        elif isinstance(node, list):
            stack.extend((v, f"{pointer}/{i}", depth + 1) for i, v in enumerate(node))
    return None
