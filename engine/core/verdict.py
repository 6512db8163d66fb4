"""PASS / FAIL / REVIEW for one result, from a task's `verdict` rules (checked at load, evaluated per image)."""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from loupe.core.confidence import format_confidence
from loupe.core.errors import TaskError
from loupe.core.types import Result, Status


class Verdict(enum.StrEnum):
    """What the operator and the line controller are told about one image."""

    PASS = "PASS"
    FAIL = "FAIL"
    REVIEW = "REVIEW"


OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class Rule:
    """One `if ... then VERDICT` line; `kind` picks the test from RULE_KINDS."""

    kind: str
    then: Verdict
    pointer: str = ""
    op: str = ">="
    value: Any = None
    reason: str = ""
    unsure: Verdict = Verdict.REVIEW  # the verdict when the rule matched only on values read with low confidence


@dataclass(frozen=True)
class Rules:
    """Ordered rules (the first that matches decides) and the verdict when none does."""

    rules: tuple[Rule, ...]
    otherwise: Verdict = Verdict.PASS


@dataclass(frozen=True)
class Match:
    """Why a rule matched, and whether the values it matched on were read with enough confidence to act on."""

    why: str
    sure: bool = True


@dataclass(frozen=True)
class Judgement:
    """A verdict and the reason, in words an operator can read."""

    verdict: Verdict
    reason: str


def resolve(data: Any, pointer: str, at: str = "") -> Iterator[tuple[str, Any]]:
    """Every (concrete pointer, value) at a JSON Pointer whose segments may be `*` (each item / value).

    Verdict rules and the escalation thresholds' wildcard keys both match through this."""
    if pointer == "":
        yield at, data
        return
    head, _, rest = pointer[1:].partition("/")
    rest = "/" + rest if rest else ""
    key = head.replace("~1", "/").replace("~0", "~")
    if key == "*":
        items = enumerate(data) if isinstance(data, list) else data.items() if isinstance(data, dict) else ()
        for name, child in items:
            yield from resolve(child, rest, f"{at}/{_escape(str(name))}")
    elif isinstance(data, dict) and key in data:
        yield from resolve(data[key], rest, f"{at}/{head}")
    elif isinstance(data, list) and key.isdigit() and int(key) < len(data):
        yield from resolve(data[int(key)], rest, f"{at}/{key}")


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _compare(rule: Rule, value: Any) -> bool:
    try:
        return bool(OPS[rule.op](value, rule.value))
    except TypeError:  # e.g. a string against a number: not a match
        return False


def _any(rule: Rule, result: Result, threshold: float) -> Match | None:
    """A value at the pointer passes the test; acted on only if one such value was read confidently.

    Values come from a model and are candidates, not truth: when every matching value's confidence is under the
    review threshold, the match is unsure and `judge` turns the rule's verdict into REVIEW."""
    hits = [(at, v) for at, v in resolve(result.data, rule.pointer) if _compare(rule, v)]
    if not hits:
        return None
    sure = [(at, v) for at, v in hits if result.confidence.get(at, 1.0) >= threshold]
    at, value = (sure or hits)[0]
    why = f"{rule.pointer} {rule.op} {rule.value} ({value!r})"
    if sure:
        return Match(why)
    return Match(
        f"{why}, read with confidence {format_confidence(result.confidence[at])} < {format_confidence(threshold)}",
        sure=False,
    )


def _count(rule: Rule, result: Result, threshold: float) -> Match | None:
    values = [v for _, v in resolve(result.data, rule.pointer)]
    n = len(values[0]) if len(values) == 1 and isinstance(values[0], list) else len(values)
    return Match(f"{n} at {rule.pointer} ({rule.op} {rule.value})") if _compare(rule, n) else None


def _status_not_ok(rule: Rule, result: Result, threshold: float) -> Match | None:
    return (
        None
        if result.status is Status.OK
        else Match(f"status {result.status.value}" + (f": {result.error}" if result.error else ""))
    )


def _confidence_below(rule: Rule, result: Result, threshold: float) -> Match | None:
    limit = threshold if rule.value is None else float(rule.value)
    low = result.min_confidence
    return (
        Match(f"confidence {format_confidence(low)} < {format_confidence(limit)}")
        if low is not None and low < limit
        else None
    )


RULE_KINDS: dict[str, Callable[[Rule, Result, float], Match | None]] = {
    "status_not_ok": _status_not_ok,
    "confidence_below": _confidence_below,
    "any": _any,
    "count": _count,
}
NEEDS_POINTER = {"any", "count"}

DEFAULT_RULES = Rules((Rule("status_not_ok", Verdict.REVIEW), Rule("confidence_below", Verdict.REVIEW)))


def judge(rules: Rules, result: Result, *, review_threshold: float = 0.5) -> Judgement:
    """The first matching rule's verdict (with why), else `otherwise`.

    A result that is not ok never PASSes silently (with no rule about status, it comes back REVIEW), and a rule
    that matched only on values read under the review threshold gives its `unsure` verdict (REVIEW unless the
    task says otherwise, e.g. a safety-first line may say FAIL)."""
    for rule in rules.rules:
        match = RULE_KINDS[rule.kind](rule, result, review_threshold)
        if match is None:
            continue
        if not match.sure and rule.unsure is not rule.then:  # e.g. a FAIL the model was unsure of
            return Judgement(rule.unsure, f"unsure {rule.then.value}: {rule.reason or match.why}")
        return Judgement(rule.then, rule.reason or match.why)
    if result.status is not Status.OK and rules.otherwise is Verdict.PASS:
        return Judgement(Verdict.REVIEW, f"status {result.status.value}")
    return Judgement(rules.otherwise, "no rule matched")


def rules_from_dict(raw: Any, source: str = "<verdict>") -> Rules:
    """Rules from a task file's `verdict` table, refusing anything unknown or mistyped by JSON Pointer.

    The table: `{rules: [{if, then, pointer?, op?, value?, reason?, unsure?}], otherwise}`."""
    if raw is None:
        return DEFAULT_RULES
    if not isinstance(raw, dict):
        raise TaskError(source, "must be a table/object with `rules` and `otherwise`", "")
    for key in raw:
        if key not in ("rules", "otherwise"):
            raise TaskError(source, f"unknown setting {key!r} (known: otherwise, rules)", f"/{key}")
    otherwise = _verdict(raw.get("otherwise", "PASS"), source, "/otherwise")
    items = raw.get("rules", [])
    if not isinstance(items, list):
        raise TaskError(source, "rules must be a list of {if, then, ...} tables", "/rules")
    return Rules(tuple(_rule(item, source, f"/rules/{i}") for i, item in enumerate(items)), otherwise)


def _verdict(value: Any, source: str, pointer: str) -> Verdict:
    try:
        return Verdict(str(value).upper()) if isinstance(value, str) else Verdict(value)
    except ValueError:
        raise TaskError(source, f"a verdict is one of {', '.join(v.value for v in Verdict)}", pointer) from None


def _rule(item: Any, source: str, at: str) -> Rule:
    if not isinstance(item, dict):
        raise TaskError(source, "a rule is a table/object with `if` and `then`", at)
    known = {"if", "then", "pointer", "op", "value", "reason", "unsure"}
    for key in item:
        if key not in known:
            raise TaskError(source, f"unknown setting {key!r} (known: {', '.join(sorted(known))})", f"{at}/{key}")
    kind = item.get("if")
    if kind not in RULE_KINDS:
        raise TaskError(source, f"`if` must be one of {', '.join(RULE_KINDS)}", f"{at}/if")
    then = _verdict(item.get("then"), source, f"{at}/then")
    pointer = item.get("pointer", "")
    if kind in NEEDS_POINTER and (not isinstance(pointer, str) or not pointer.startswith("/")):
        raise TaskError(source, f"`{kind}` needs a JSON Pointer such as '/defects/*/severity'", f"{at}/pointer")
    op = item.get("op", ">=")
    if op not in OPS:
        raise TaskError(source, f"op must be one of {' '.join(OPS)}", f"{at}/op")
    value = item.get("value")
    if kind in NEEDS_POINTER and value is None:
        raise TaskError(source, "a value to compare with is needed", f"{at}/value")
    if (
        kind in ("count", "confidence_below")
        and value is not None
        and (isinstance(value, bool) or not isinstance(value, int | float))
    ):
        raise TaskError(source, "value must be a number", f"{at}/value")
    reason = item.get("reason", "")
    if not isinstance(reason, str):
        raise TaskError(source, "reason must be a string", f"{at}/reason")
    unsure = _verdict(item.get("unsure", "REVIEW"), source, f"{at}/unsure")
    return Rule(kind, then, pointer, op, value, reason, unsure)
