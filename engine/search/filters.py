"""`--where`: filters on a result's JSON by pointer (`/defects/*/label = crack AND /total > 100`), and the plain
filters beside it (status, confidence, job, date), applied to the store's rows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from loupe.core.errors import LoupeError

OPS = ("!=", "<=", ">=", "=", "<", ">", "~")
_CLAUSE = re.compile(r"^\s*(/\S*)\s*(!=|<=|>=|=|<|>|~)\s*(.*?)\s*$", re.S)
_AND = re.compile(r"\s+and\s+|\s*&&\s*", re.I)


class WhereError(LoupeError):
    """A --where expression that cannot be read."""


@dataclass(frozen=True)
class Condition:
    """One `POINTER OP VALUE`; `*` in the pointer matches every key or index at that level."""

    pointer: str
    op: str
    value: Any

    def matches(self, data: Any) -> bool:
        """`!=` holds when no value at the pointer equals VALUE (a missing one included); every other operator
        holds when some value at the pointer satisfies it."""
        found = list(resolve(data, self.pointer))
        if self.op == "!=":
            return not any(_equal(v, self.value) for v in found)
        return any(_test(v, self.op, self.value) for v in found)


def parse_where(expr: str) -> tuple[Condition, ...]:
    """`/a/*/b = x AND /n > 3` as conditions (all must hold). VALUE is JSON when it parses (3, true, "a b"),
    else the text as written."""
    if not expr.strip():
        return ()
    out = []
    for part in _AND.split(expr.strip()):
        m = _CLAUSE.match(part)
        if m is None:
            raise WhereError(
                f"--where: cannot read {part.strip()!r}: write POINTER OP VALUE, e.g. '/defects/*/label = crack'"
                f" or '/total > 100' (OP one of {' '.join(OPS)}; clauses joined by AND)"
            )
        pointer, op, raw = m.groups()
        if raw == "":
            raise WhereError(f"--where: {part.strip()!r} has no value after {op}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if op in ("<", "<=", ">", ">=") and not (_number(value) or isinstance(value, str)):
            raise WhereError(f"--where: {op} compares numbers or text, not {raw!r}")
        out.append(Condition(pointer, op, value))
    return tuple(out)


def resolve(data: Any, pointer: str) -> Iterator[Any]:
    """Every value a JSON pointer reaches, `*` standing for any key or index ('' is the whole document)."""
    if pointer in ("", "/"):
        yield data
        return
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
    yield from _walk(data, parts)


def _walk(node: Any, parts: list[str]) -> Iterator[Any]:
    if not parts:
        yield node
        return
    head, rest = parts[0], parts[1:]
    if isinstance(node, dict):
        children = list(node.values()) if head == "*" else ([node[head]] if head in node else [])
    elif isinstance(node, list):
        at = int(head) if head.isdigit() else len(node)
        children = list(node) if head == "*" else node[at : at + 1]
    else:
        children = []
    for child in children:
        yield from _walk(child, rest)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _equal(a: Any, b: Any) -> bool:
    if _number(a) and _number(b):
        return float(a) == float(b)
    if isinstance(a, str) and not isinstance(b, str):  # `= 3` against "3"
        return a == json.dumps(b)
    return type(a) is type(b) and bool(a == b)


def _test(v: Any, op: str, want: Any) -> bool:
    if op == "=":
        return _equal(v, want)
    if op == "~":
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        return str(want).lower() in text.lower()
    if _number(v) and _number(want):
        a, b = float(v), float(want)
    elif isinstance(v, str) and isinstance(want, str):
        a, b = v, want  # type: ignore[assignment]
    else:
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


@dataclass(frozen=True)
class Filters:
    """What every search can be narrowed by: a --where expression over the data (a person's edit wins over the
    model's answer), the result's status, its lowest confidence, its job, and when it was stored (ISO dates or
    times, UTC, compared as text: `2025-06-01` is from that day on for `since`, through that day for `until`)."""

    where: str = ""
    status: tuple[str, ...] = ()
    min_confidence: float | None = None
    max_confidence: float | None = None
    job: int | None = None
    since: str | None = None
    until: str | None = None
    conditions: tuple[Condition, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", parse_where(self.where))

    @property
    def empty(self) -> bool:
        """True when nothing is filtered."""
        return not (self.where.strip() or self.status or self.job is not None or self.since or self.until) and (
            self.min_confidence is None and self.max_confidence is None
        )

    def sql(self) -> tuple[str, list[Any]]:
        """The part SQL can check, as a WHERE clause over results r / items i (always something)."""
        clauses: list[str] = ["1"]
        args: list[Any] = []
        if self.status:
            clauses.append(f"r.status IN ({', '.join('?' for _ in self.status)})")
            args.extend(self.status)
        if self.job is not None:
            clauses.append("i.job_id = ?")
            args.append(self.job)
        if self.min_confidence is not None:
            clauses.append("r.min_confidence >= ?")
            args.append(self.min_confidence)
        if self.max_confidence is not None:
            clauses.append("r.min_confidence <= ?")
            args.append(self.max_confidence)
        if self.since:
            clauses.append("r.created >= ?")
            args.append(self.since)
        if self.until:
            clauses.append("r.created <= ?")
            args.append(self.until + ("\uffff" if len(self.until) <= 10 else ""))  # a date: the whole day
        return " AND ".join(clauses), args

    def matches(self, data: Any) -> bool:
        """The --where conditions, all of them, on one result's data."""
        return all(c.matches(data) for c in self.conditions)
