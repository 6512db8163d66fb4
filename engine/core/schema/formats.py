"""Strict `format` checks where jsonschema's are loose (measured on the JSON Schema Test Suite's optional/format).

- hostname: RFC 1123 labels, ASCII only, no trailing dot, and `xn--` labels that are valid Punycode/IDNA A-labels.
- idn-hostname: IDNA 2008 (the `idna` package), no trailing dot of any script, RFC 5893's Bidi rule on every
  label of a domain name that has a right-to-left one.
- regex: ECMA-262 syntax, not Python's: Python-only groups, inline flags and escapes are refused; ECMA-only forms
  (`(?<name>`, `\\k<name>`, `[]`, `[^]`, `\\cX`, variable lookbehind) are accepted.
- uri-template: RFC 6570 level 4 grammar.
- relative-json-pointer: ASCII digits, then `#` or a JSON Pointer.
- time / date-time: RFC 3339, leap seconds allowed where they can occur (23:59:60 in UTC), no trailing newline.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import idna
import regex

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def is_hostname(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not value or len(value) > 253 or not value.isascii():
        return False
    for label in value.split("."):
        if not _LABEL.fullmatch(label):
            return False
        if label[2:4] == "--":  # RFC 5891 4.2.3.1: only A-labels may have "--" there
            if label[:4].lower() != "xn--":
                return False
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                return False
    return True


_DOTS = (".", "\u3002", "\uff0e", "\uff61")


def is_idn_hostname(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not value or value.endswith(_DOTS):
        return False
    try:
        encoded = idna.encode(value, uts46=False)
        labels = value.split(".")
        if any(unicodedata.bidirectional(c) in ("R", "AL", "AN") for c in value):  # a Bidi domain name: every
            for label in labels:  # label keeps RFC 5893's Bidi rule, not only the right-to-left ones
                idna.check_bidi(label, check_ltr=True)
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return len(encoded) <= 253


_PY_GROUPS = re.compile(r"\(\?(?:P[<=>]|#|[aiLmsux-]+[:)]|>)|(?:[*+?]|\{\d+(?:,\d*)?\})\+")  # Python-only syntax
# ECMA-262's \s: its WhiteSpace and LineTerminator code points (U+FEFF included, unlike Python's)
_ECMA_SPACE = "\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
_CLASS_ESCAPES = {"d": "0-9", "w": "A-Za-z0-9_", "s": _ECMA_SPACE}


def translate(pattern: str) -> str:
    """An ECMA-262 pattern rewritten for the `regex` module: \\d \\w \\s (and negations) as ECMA defines them,
    `[]`, `[^]`, `\\cX` and `\\k<name>` in regex's spelling."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            e = pattern[i + 1]
            if e.lower() in _CLASS_ESCAPES:
                body = _CLASS_ESCAPES[e.lower()]
                if in_class:  # [\\d.] -> [0-9.]; a negated one inside a class ([\\D.]) keeps regex's meaning
                    out.append(body if e.islower() else pattern[i : i + 2])
                else:
                    out.append(f"[{body}]" if e.islower() else f"[^{body}]")
                i += 2
                continue
            if e == "c" and i + 2 < len(pattern) and pattern[i + 2].isalpha():
                out.append(f"\\x{ord(pattern[i + 2].upper()) - 64:02x}")
                i += 3
                continue
            if e == "k" and pattern[i + 2 : i + 3] == "<":
                name = pattern[i + 3 : pattern.find(">", i + 3)]
                out.append(f"(?P={name})")
                i += 4 + len(name)
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if not in_class and pattern.startswith("[^]", i):
            out.append("[\\s\\S]")
            i += 3
            continue
        if not in_class and pattern.startswith("[]", i):
            out.append("(?!)")
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=512)
def compiled(pattern: str) -> Any:
    """The `regex` module's compiled form of an ECMA-262 pattern (regex.error when it is not one)."""
    return regex.compile(translate(pattern))


def is_ecma_regex(value: object) -> bool:
    if not isinstance(value, str):
        return True
    plain = re.sub(r"\\.", "\0", value, flags=re.S)  # escapes out of the way
    if _PY_GROUPS.search(plain):
        return False
    for m in re.finditer(r"\\(.)", value, flags=re.S):  # escapes, paired left to right
        if m[1] in "aAZ" or (m[1] == "N" and value[m.end() : m.end() + 1] == "{"):
            return False
    try:
        compiled(value)
    except (regex.error, OverflowError, RecursionError, ValueError):
        return False
    return True


_VARCHAR = r"(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})"
_VARSPEC = rf"{_VARCHAR}(?:\.?{_VARCHAR})*(?::[1-9][0-9]{{0,3}}|\*)?"
_EXPRESSION = rf"\{{[+#./;?&]?{_VARSPEC}(?:,{_VARSPEC})*\}}"
_LITERAL = r"(?:[^\x00-\x20\x7f\"%<>\\^`{|}]|%[0-9A-Fa-f]{2})"
_URI_TEMPLATE = re.compile(rf"(?:{_LITERAL}|{_EXPRESSION})*")


def is_uri_template(value: object) -> bool:
    return not isinstance(value, str) or bool(_URI_TEMPLATE.fullmatch(value))


_TIME = re.compile(
    r"(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d):(?P<s>[0-5]\d|60)(?:\.\d+)?"
    r"(?:(?P<z>[Zz])|(?P<sign>[+-])(?P<oh>[01]\d|2[0-3]):(?P<om>[0-5]\d))",
    re.ASCII,  # \d is 0-9 only: "1২:00:00Z" is no time
)


def is_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    m = _TIME.fullmatch(value)
    if m is None:
        return False
    if m["s"] != "60":
        return True
    minutes = int(m["h"]) * 60 + int(m["m"])
    if not m["z"]:  # to UTC: subtract the offset
        offset = int(m["oh"]) * 60 + int(m["om"])
        minutes -= offset if m["sign"] == "+" else -offset
    return minutes % (24 * 60) == 23 * 60 + 59  # a leap second is the last second of a UTC day


_DATE = re.compile(r"(?P<y>\d{4})-(?P<mo>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12]\d|3[01])", re.ASCII)
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _is_date(value: str) -> bool:
    m = _DATE.fullmatch(value)
    if m is None:
        return False
    y, mo, d = int(m["y"]), int(m["mo"]), int(m["d"])
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    return d <= (29 if mo == 2 and leap else 28 if mo == 2 else _DAYS[mo - 1])


def is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    date, sep, time = value.partition("T") if "T" in value else value.partition("t")
    return bool(sep) and _is_date(date) and is_time(time)


_RELATIVE_POINTER = re.compile(r"(?:0|[1-9][0-9]*)(?:#|(?:/(?:[^/~]|~[01])*)*)", re.ASCII | re.S)


def is_relative_json_pointer(value: object) -> bool:
    return not isinstance(value, str) or bool(_RELATIVE_POINTER.fullmatch(value))


def _authority_ok(value: str) -> bool:
    """The host of a URI/IRI reference with an authority: an IP literal in brackets must be a valid IPv6 address
    (no leading zeros in an embedded IPv4), and an unbracketed host holds no colon but the port's."""
    if "//" not in value:
        return True
    rest = value.split("//", 1)[1] if value.startswith("//") or "://" in value else ""
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    if authority.startswith("["):
        literal, _, after = authority[1:].partition("]")
        if after and not re.fullmatch(r":[0-9]*", after):
            return False
        if literal[:1] in ("v", "V"):  # IPvFuture
            return True
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
        return True
    return authority.count(":") <= 1


def with_authority(base: Callable[[object], bool]) -> Callable[[object], bool]:
    """`base`, and the host of a URI/IRI as `_authority_ok` checks it."""
    return lambda value: bool(base(value)) and (not isinstance(value, str) or _authority_ok(value))


STRICT: dict[str, Callable[[object], bool]] = {
    "relative-json-pointer": is_relative_json_pointer,
    "hostname": is_hostname,
    "idn-hostname": is_idn_hostname,
    "regex": is_ecma_regex,
    "uri-template": is_uri_template,
    "time": is_time,
    "date-time": is_date_time,
}
