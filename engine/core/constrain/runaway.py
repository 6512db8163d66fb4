"""Runaway guards for the decoding loop: numbers and strings that never end, and values stuck in a loop.

A grammar for a JSON Schema without `maxLength` or numeric bounds lets a value grow without end; a real model that
wanted something the schema forbids (close the object, add a key) then keeps taking the least bad allowed token:
`1000000…`, or `\\u001c\\u001c…` after a backslash it did not mean as an escape. The guard follows the output's
JSON lexically and, over the tokens the grammar allows: (1) ends a number or string where the model itself would
rather end it; (2) lets a number longer than `number_chars` only end, a string longer than `string_chars` only
close, an array holding `array_items` only close; (3) ends the attempt with stop `loop` when the tail of one value
repeats. The pipeline retries a loop differently (`Limits.after_loop`): the looping value is cut where
its repetition began (or `\\u` escapes are not offered when the loop went through them), and a value that starts
looping in the retry is closed at once instead of ending the attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

NUMBER_CHARS = 24  # a double has 17 significant digits; sign, point and exponent fit in the rest
MIN_STRING_CHARS = 64
MIN_ITEMS = 16
WRAP_UP = 0.75  # share of max_tokens after which the output is brought to an end
LOOP_BYTES = 48  # the repeated tail of one value must be at least this long ...
LOOP_REPEATS = 4  # ... and hold its unit this many times
LOOP_MAX_UNIT = 32

_DIGITS = frozenset(b"0123456789")


@dataclass(frozen=True)
class Limits:
    """What the guard enforces for one attempt."""

    number_chars: int = NUMBER_CHARS
    string_chars: int = 512
    array_items: int = 64
    budget: int = 0  # the attempt's max_tokens: past WRAP_UP of it every value ends and every array closes (0: never)
    loop: str = "stop"  # a looping value ends the attempt ("stop"), is closed at once ("close"), or runs on ("off")
    unicode_escapes: bool = True  # False: after a loop through \\u escapes, they are no longer offered
    cut: tuple[tuple[int, int], ...] = ()  # (value ordinal, length): that value must end at that length

    @staticmethod
    def for_task(schema: dict[str, Any] | bool, max_tokens: int) -> Limits:
        """Limits for a schema and token budget: strings may run to half the budget in characters (at least
        MIN_STRING_CHARS, never below the schema's own largest maxLength), numbers to the digits the schema's
        bounds need (at least NUMBER_CHARS), arrays to a sixteenth of the budget in items (at least MIN_ITEMS, never
        below the schema's own largest maxItems or minItems)."""
        lengths, numbers, items = _schema_extents(schema)
        strings = max([MIN_STRING_CHARS, max_tokens // 2, *lengths])
        return Limits(
            number_chars=max([NUMBER_CHARS, *numbers]),
            string_chars=strings,
            array_items=max([MIN_ITEMS, max_tokens // 16, *items]),
            budget=max_tokens,
        )

    def after_loop(self, loop: Loop) -> Limits:
        """The next attempt's limits after `loop`: no \\u escapes if it went through them, else cut that value."""
        if b"\\u" in loop.unit or loop.unit in (b"u", b"\\"):
            return replace(self, unicode_escapes=False, loop="close")
        return replace(self, cut=(*self.cut, (loop.value, loop.keep)), loop="close")


@dataclass(frozen=True)
class Loop:
    """A value whose tail repeats: the `value`-th value of the output, repeating `unit` from length `start`."""

    value: int
    start: int
    unit: bytes
    keep: int = 0  # characters of the value up to the end of the repeated unit's first whole occurrence

    def describe(self) -> str:
        """For the attempt's error text."""
        shown = self.unit.decode("utf-8", errors="replace")[:16]
        return f"value {self.value + 1} of the output repeated {shown!r} from character {self.start}"


@dataclass
class Guard:
    """Follows one generation's bytes (JSON lexically) and narrows the allowed tokens when a value runs away."""

    limits: Limits
    tables: TokenTables
    values: int = -1  # ordinal of the current (or last) value
    kind: str = ""  # "string", "number" or "" between values
    escape: bool = False  # inside a string, right after an unescaped backslash
    current: bytearray = field(default_factory=bytearray)  # the current value's bytes (no quotes)
    loop: Loop | None = None
    closing: bool = False  # the current value looped (with Limits.loop "close"): it may only end
    containers: list[list[int]] = field(default_factory=list)  # open [ and {: [kind byte, commas at that depth]
    spent: int = 0  # tokens fed
    pos: int = 0  # bytes fed
    value_start: int = 0  # byte offset where the current value began
    ended_by_guard: bool = False  # the last narrow() kept only tokens that end what is open
    doubt_scope: str = "value"  # ... the value being written, or the container it is an item of
    # [start, end (None while open), p']: what the guard ended against the model's wish; its leaves are as certain
    # as the model's own choice of that ending (loupe.api.pipeline caps their confidence with it)
    doubts: list[list[Any]] = field(default_factory=list)

    @property
    def wrapping_up(self) -> bool:
        """Most of the token budget is spent: what is open should now end, so the JSON closes before it runs out."""
        return bool(self.limits.budget) and self.spent >= self.limits.budget * WRAP_UP

    def feed(self, piece: bytes) -> None:
        """Advance over one token's bytes."""
        self.spent += 1
        for b in piece:
            self.pos += 1
            if self.kind == "string":
                if self.escape:
                    self.escape = False
                    self.current.append(b)
                elif b == 0x5C:  # backslash
                    self.escape = True
                    self.current.append(b)
                elif b == 0x22:  # closing quote
                    self.kind = ""
                    self._settle(self.value_start)
                else:
                    self.current.append(b)
                continue
            if self.kind == "number":
                if b in _DIGITS or b in b"+-.eE":
                    self.current.append(b)
                    continue
                self.kind = ""
                self._settle(self.value_start, self.pos - 1)
            if b == 0x22:
                self._start("string")
            elif b in _DIGITS or b == 0x2D:
                self._start("number")
                self.current.append(b)
            elif b in b"[{":
                self.containers.append([b, 0, self.pos - 1])
            elif b in b"]}" and self.containers:
                self._settle(self.containers.pop()[2])
            elif b == 0x2C and self.containers:
                self.containers[-1][1] += 1
        if self.limits.loop != "off" and self.kind and self.loop is None and not self.closing:
            found = _tail_loop(bytes(self.current), self.values)
            if found is not None and self.limits.loop == "close":
                self.closing = True
            else:
                self.loop = found

    def doubt(self, prob: float) -> None:
        """The token just chosen from a narrowed set ends what is open, with this p' among all the grammar allowed."""
        if self.kind and (self.doubt_scope == "value" or not self.containers):
            start = self.value_start
        else:
            start = self.containers[-1][2] if self.containers else 0
        self.doubts.append([start, None, prob])

    def _settle(self, start: int, end: int | None = None) -> None:
        """What began at `start` has ended (at `end`, else here): close its open doubts."""
        for d in self.doubts:
            if d[0] == start and d[1] is None:
                d[1] = self.pos if end is None else end

    def _start(self, kind: str) -> None:
        self.value_start = self.pos - 1
        self.kind, self.values, self.escape, self.closing = kind, self.values + 1, False, False
        self.current.clear()

    def _ending_now(self) -> bool:
        """The current value has reached its limit (or its cut from an earlier loop) and may only end."""
        cut = 0 if self.closing or self.wrapping_up else dict(self.limits.cut).get(self.values)
        if self.kind == "string" and not self.escape:
            limit = self.limits.string_chars if cut is None else cut
            return len(self.current.decode("utf-8", errors="ignore")) >= limit
        if self.kind == "number":
            limit = self.limits.number_chars if cut is None else max(1, cut)
            return len(self.current) >= limit and self.current[-1] in _DIGITS
        return False

    def narrow(self, allowed: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """A subset of the grammar's `allowed` ids (never empty: when nothing would remain, `allowed` itself).

        With `weights` (exp(logits - max) over the whole vocabulary), a value also ends where the model itself would
        rather end it: when its own probability of the tokens that end the value (allowed or not: `",` or `},` after
        a last property, which the schema forbids) exceeds that of the allowed tokens that continue it. That model
        wanted to close the object, not to add digits."""
        keep = None
        self.ended_by_guard = False
        t = self.tables
        ends = (t.ends_string if self.kind == "string" else t.ends_number) if self.kind and not self.escape else None
        if ends is not None and self._ending_now():
            keep = ends[allowed]
            self.ended_by_guard, self.doubt_scope = True, "value"  # against the model's wish: a doubtful value
        elif ends is not None and weights is not None and _wants_end(weights, allowed, ends):
            keep = ends[allowed]  # the model's own wish
        top = self.containers[-1] if self.containers else None
        full = top is not None and (self.wrapping_up or (top[0] == 0x5B and top[1] + 1 >= self.limits.array_items))
        if full and not self.escape:
            # an array holds its limit of items (or the budget is nearly spent, then objects too): no token may end
            # this item and add another (`",` or `, `); where the schema requires more, nothing is narrowed
            comma = t.has_comma[allowed] if ends is None else t.has_comma[allowed] & ends[allowed]
            keep = ~comma if keep is None else keep & ~comma
            if comma.any():
                self.ended_by_guard, self.doubt_scope = True, "container"
        if not self.limits.unicode_escapes and self.kind == "string":
            no_u = ~t.has_u_escape[allowed]
            if self.escape:
                no_u &= t.first_bytes[allowed] != 0x75  # "u" right after a backslash
            keep = no_u if keep is None else keep & no_u
        if keep is None or not keep.any():
            return allowed
        return allowed[keep]


@dataclass(frozen=True)
class TokenTables:
    """Per token id of one vocabulary, what the guard asks of its bytes."""

    first_bytes: np.ndarray  # its first byte (256 for an empty piece)
    has_u_escape: np.ndarray  # it holds the bytes \\u
    ends_number: np.ndarray  # it starts with a byte that cannot continue a JSON number
    ends_string: np.ndarray  # it starts with a quote
    has_comma: np.ndarray  # it holds a comma


def token_tables(n_vocab: int, piece: Any) -> TokenTables:
    """The guard's tables for a vocabulary (one pass over its pieces)."""
    first = np.full(n_vocab, 256, dtype=np.int16)
    has_u = np.zeros(n_vocab, dtype=bool)
    comma = np.zeros(n_vocab, dtype=bool)
    for t in range(n_vocab):
        p = piece(t)
        if p:
            first[t] = p[0]
            has_u[t] = b"\\u" in p
            comma[t] = b"," in p
    in_number = np.isin(first, np.frombuffer(b"0123456789.eE+-", dtype=np.uint8).astype(np.int16))
    return TokenTables(first, has_u, ~in_number & (first != 256), first == 0x22, comma)


def _wants_end(weights: np.ndarray, allowed: np.ndarray, ends: np.ndarray) -> bool:
    """The model's own probability of ending the value (any token that ends it) exceeds that of continuing it
    within the grammar (`weights`: its unnormalized probabilities over the whole vocabulary)."""
    go_on = allowed[~ends[allowed]]
    return float(weights[ends].sum(dtype=np.float64)) > float(weights[go_on].sum(dtype=np.float64))


def _tail_loop(value: bytes, ordinal: int) -> Loop | None:
    """The shortest unit (up to LOOP_MAX_UNIT bytes) that the value's tail repeats LOOP_REPEATS times over at
    least LOOP_BYTES, with where that repetition began; None when it does not."""
    n = len(value)
    if n < LOOP_BYTES:
        return None
    for unit in range(1, LOOP_MAX_UNIT + 1):
        span = max(LOOP_BYTES, unit * LOOP_REPEATS)
        if span > n:
            break
        tail = value[n - span :]
        if tail[unit:] == tail[:-unit]:
            start = n - span
            while start > 0 and value[start - 1] == value[start - 1 + unit]:
                start -= 1
            keep = n - ((n - start) // unit - 1) * unit  # one whole unit, in the phase the tail repeats it
            chars = len(value[:start].decode("utf-8", errors="ignore"))
            return Loop(ordinal, chars, value[n - unit :], len(value[:keep].decode("utf-8", errors="ignore")))
    return None


def _schema_extents(schema: Any) -> tuple[list[int], list[int], list[int]]:
    """Every maxLength in the schema, the characters its numeric bounds need, and every maxItems/minItems."""
    lengths: list[int] = []
    numbers: list[int] = []
    items: list[int] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("maxLength"), int):
                lengths.append(node["maxLength"])
            items += [node[k] for k in ("maxItems", "minItems") if isinstance(node.get(k), int)]
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
                v = node.get(key)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    numbers.append(len(repr(v)) + 2)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return lengths, numbers, items
