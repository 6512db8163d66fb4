"""Strict `format` checks where jsonschema's are loose (measured on the JSON Schema Test Suite's optional/format).

- hostname: RFC 1123 labels, ASCII only, no trailing dot, and `xn--` labels that are valid Punycode/IDNA A-labels.
- idn-hostname: IDNA 2008 (the `idna` package), no trailing dot of any script.
- regex: ECMA-262 syntax, not Python's: Python-only groups, inline flags and escapes are refused; ECMA-only forms
  (`(?<name>`, `\\k<name>`, `[]`, `[^]`, `\\cX`, variable lookbehind) are accepted.
- uri-template: RFC 6570 level 4 grammar.
- relative-json-pointer: ASCII digits, then `#` or a JSON Pointer.
- time / date-time: RFC 3339, leap seconds allowed where they can occur (23:59:60 in UTC), no trailing newline.
"""

from __future__ import annotations

import re
from collections.abc import Callable

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
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return len(encoded) <= 253


_PY_GROUPS = re.compile(r"\(\?(?:P[<=>]|#|[aiLmsux-]+[:)]|>)|[*+?}]\+")  # named/comment/flag/atomic, possessive


def is_ecma_regex(value: object) -> bool:
    if not isinstance(value, str):
        return True
    plain = re.sub(r"\\.", "\0", value, flags=re.S)  # escapes out of the way
    if _PY_GROUPS.search(plain):
        return False
    for m in re.finditer(r"\\(.)", value, flags=re.S):  # escapes, paired left to right
        if m[1] in "aAZ" or (m[1] == "N" and value[m.end() : m.end() + 1] == "{"):
            return False
    translated = value.replace("[^]", r"[\s\S]").replace("[]", "(?!)")
    translated = re.sub(r"\\c([A-Za-z])", lambda m: f"\\x{ord(m.group(1).upper()) - 64:02x}", translated)
    translated = re.sub(r"\\k<(\w+)>", r"(?P=\1)", translated)  # ECMA's named backreference
    try:
        regex.compile(translated)
    except (regex.error, OverflowError, RecursionError):
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


STRICT: dict[str, Callable[[object], bool]] = {
    "relative-json-pointer": is_relative_json_pointer,
    "hostname": is_hostname,
    "idn-hostname": is_idn_hostname,
    "regex": is_ecma_regex,
    "uri-template": is_uri_template,
    "time": is_time,
    "date-time": is_date_time,
}
