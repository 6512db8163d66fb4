"""Strict `format` checks where jsonschema's are loose (measured on the JSON Schema Test Suite's optional/format).

- hostname: RFC 1123 labels, ASCII only, no trailing dot, and `xn--` labels that are valid Punycode/IDNA A-labels.
- idn-hostname: IDNA 2008 (the `idna` package), no trailing dot of any script, RFC 5893's Bidi rule on every
  label of a domain name that has a right-to-left one.
- regex: ECMA-262 syntax, not Python's: Python-only groups, inline flags and escapes are refused; ECMA-only forms
  (`(?<name>`, `\\k<name>`, `[]`, `[^]`, `\\cX`, variable lookbehind) are accepted.
- uri-template: RFC 6570 level 4 grammar.
- relative-json-pointer: ASCII digits, then `#` or a JSON Pointer.
- time / date-time: RFC 3339, leap seconds allowed where they can occur (23:59:60 in UTC), no trailing newline.
- email: RFC 5321's Mailbox (a dot-string or quoted local part; a domain, or an IPv4 or IPv6 address literal).
- ipv6: RFC 4291 as RFC 3986 writes it (an embedded IPv4 in the last 32 bits included), ASCII only, no zone.

`EMAIL` and `IPV6` are regexes in the syntax Python's `re` and LLGuidance share, so the grammar enforces exactly
what validation checks. A task's `format` option (`FORMAT_MODES`) makes `format` an assertion (Loupe's default) or,
as draft 2020-12 has it by default, an annotation: `without_formats` is the schema the grammar gets then.
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
_ECMA_DOT = "[^\\n\\r\\u2028\\u2029]"  # ECMA-262's `.`: anything but a LineTerminator


def translate(pattern: str, *, nested: bool = False, grammar: bool = False) -> str:
    """An ECMA-262 pattern rewritten for the `regex` module: \\d \\w \\s (and negations) as ECMA defines them, `.`
    short of line terminators, `$` at the very end only, `[]`, `[^]`, `\\cX` and `\\k<name>` in regex's spelling.
    With `nested`, a negated escape inside a class (`[\\D.]`) becomes a nested class (`[[^0-9].]`), as the `regex`
    module reads it in its V1 mode; `grammar` is for LLGuidance (nested classes; `.` and `$` its own)."""
    nested = nested or grammar
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            e = pattern[i + 1]
            if e.lower() in _CLASS_ESCAPES:
                body = _CLASS_ESCAPES[e.lower()]
                if in_class:  # [\\d.] -> [0-9.]; [\\D.] -> [[^0-9].] (nested), else kept in regex's meaning
                    out.append(body if e.islower() else f"[^{body}]" if nested else pattern[i : i + 2])
                else:
                    out.append(f"[{body}]" if e.islower() else f"[^{body}]")
                i += 2
                continue
            if e == "c" and i + 2 < len(pattern) and pattern[i + 2].isascii() and pattern[i + 2].isalpha():
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
        if not in_class and c in ".$" and not grammar:  # Python's `.` takes \r and U+2028, its `$` matches
            out.append(_ECMA_DOT if c == "." else "\\Z")  # before a final \n (LLGuidance: constrain.standard)
            i += 1
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        elif in_class and (c == "[" or pattern.startswith(("&&", "~~"), i)):  # literals in ECMA; nesting and set
            out.append("\\" + c)  # operators to regex V1 and LLGuidance
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=512)
def compiled(pattern: str) -> Any:
    """The `regex` module's compiled form of an ECMA-262 pattern (regex.error when it is not one); V1 (nested
    classes) only where a negated escape sits in a class, V1 reading `--`, `&&`, `||` in classes otherwise."""
    plain = translate(pattern)
    nested = translate(pattern, nested=True)
    return regex.compile(plain) if nested == plain else regex.compile(nested, flags=regex.V1)


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


def _h(n: int, h: str) -> str:
    """`n` colon-separated hex groups."""
    return ":".join([h] * n)


def _ipv6(h: str, ipv4: str) -> str:
    """RFC 3986's IPv6address (RFC 4291 section 2.2), groups `h`, an embedded IPv4 `ipv4`."""
    ls32 = f"(?:{h}:{h}|{ipv4})"
    alternatives = [f"(?:{h}:){{6}}{ls32}", f"::(?:{h}:){{5}}{ls32}"]
    for before, after in ((0, 4), (1, 3), (2, 2), (3, 1), (4, 0)):  # [*n(h16 ":") h16] "::" m(h16 ":") ls32
        head = f"(?:{h}:){{0,{before}}}{h}" if before else h
        alternatives.append(f"(?:{head})?::{f'(?:{h}:){{{after}}}' if after else ''}{ls32}")
    alternatives.append(f"(?:(?:{h}:){{0,5}}{h})?::{h}")
    alternatives.append(f"(?:(?:{h}:){{0,6}}{h})?::")
    return "(?:" + "|".join(alternatives) + ")"


_HEX4 = "[0-9A-Fa-f]{1,4}"
_DEC_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"  # RFC 3986: no leading zeros
IPV6 = _ipv6(_HEX4, f"{_DEC_OCTET}(?:\\.{_DEC_OCTET}){{3}}")
"""RFC 4291 / RFC 3986 IPv6 address text, the whole string (no zone, no brackets, no prefix length)."""


def _smtp_ipv6(h: str, ipv4: str) -> str:
    """RFC 5321 4.1.3's IPv6-addr: full, or "::" with at most 6 groups beside it (4 before an IPv4)."""
    alternatives = [f"{h}(?::{h}){{7}}", f"{h}(?::{h}){{5}}:{ipv4}"]
    for total, tail in ((6, ""), (4, ipv4)):
        for before in range(total + 1):
            head = f"{h}(?::{h}){{{before - 1}}}" if before else ""
            room = total - before
            if tail:
                after = f"(?:{h}:){{0,{room}}}" if room else ""
            else:
                after = f"(?:{h}(?::{h}){{0,{room - 1}}})?" if room else ""
            alternatives.append(f"{head}::{after}{tail}")
    return "(?:" + "|".join(alternatives) + ")"


_ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_QUOTED = '"(?:[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]|\\\\[\\x20-\\x7e])*"'  # qtextSMTP / quoted-pairSMTP
_SUB_DOMAIN = "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_SNUM = "(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]{1,2})"  # RFC 5321: 1*3DIGIT, 0..255
_SMTP_IPV4 = f"{_SNUM}(?:\\.{_SNUM}){{3}}"
EMAIL = (
    f"(?:{_ATEXT}+(?:\\.{_ATEXT}+)*|{_QUOTED})"
    f"@(?:{_SUB_DOMAIN}(?:\\.{_SUB_DOMAIN})*"
    f"|\\[(?:{_SMTP_IPV4}|[Ii][Pp][Vv]6:{_smtp_ipv6(_HEX4, _SMTP_IPV4)})\\])"
)
"""RFC 5321's Mailbox, the whole string. Of the address literals, IPv4 and IPv6: the General-address-literal's
tags must be registered with IANA, and only `IPv6` is."""

_EMAIL = re.compile(EMAIL)
_IPV6 = re.compile(IPV6)


def is_email(value: object) -> bool:
    return not isinstance(value, str) or bool(_EMAIL.fullmatch(value))


def is_ipv6(value: object) -> bool:
    return not isinstance(value, str) or bool(_IPV6.fullmatch(value))


GRAMMAR_FORMATS: dict[str, str] = {"email": EMAIL, "ipv6": IPV6}
"""Formats LLGuidance knows by a regex narrower than the standard's (RFC 5321's quoted local parts, IPv6 with an
embedded IPv4): the grammar enforces these regexes instead."""


STRICT: dict[str, Callable[[object], bool]] = {
    "email": is_email,
    "ipv6": is_ipv6,
    "relative-json-pointer": is_relative_json_pointer,
    "hostname": is_hostname,
    "idn-hostname": is_idn_hostname,
    "regex": is_ecma_regex,
    "uri-template": is_uri_template,
    "time": is_time,
    "date-time": is_date_time,
}


FORMAT_MODES = ("assertion", "annotation")
"""A task's `format` option: values must be valid (Loupe's default), or `format` only describes them (draft
2020-12's default, its format-annotation vocabulary)."""

# keywords whose value is a subschema / a map of subschemas / a list of subschemas (every draft)
_SUB_ONE = (
    "additionalProperties",
    "items",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "additionalItems",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
)
_SUB_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies")
_SUB_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def rewrite_schemas(schema: Any, change: Callable[[dict[str, Any], str], dict[str, Any]]) -> Any:
    """A copy of `schema` with `change(node, pointer)` applied to every schema object in it, the root first, then
    the subschemas of what it returned (values such as `const`, `enum` or `default` are never schemas)."""

    def walk(node: Any, pointer: str) -> Any:
        if not isinstance(node, dict):
            return node
        node = change(dict(node), pointer)
        for key, value in list(node.items()):
            here = f"{pointer}/{_esc(key)}"
            if key in _SUB_ONE and isinstance(value, dict):
                node[key] = walk(value, here)
            elif key in _SUB_MAP and isinstance(value, dict):
                node[key] = {k: walk(v, f"{here}/{_esc(k)}") for k, v in value.items()}
            elif key in _SUB_LIST and isinstance(value, list):
                node[key] = [walk(v, f"{here}/{i}") for i, v in enumerate(value)]
        return node

    return walk(schema, "")


def formats_used(schema: Any) -> list[str]:
    """The `format` values a schema names, sorted."""
    found: set[str] = set()

    def note(node: dict[str, Any], pointer: str) -> dict[str, Any]:
        if isinstance(node.get("format"), str):
            found.add(node["format"])
        return node

    rewrite_schemas(schema, note)
    return sorted(found)


def without_formats(schema: Any) -> Any:
    """`schema` with every `format` keyword taken out: what the grammar enforces when `format` is an annotation."""
    return rewrite_schemas(schema, lambda node, pointer: {k: v for k, v in node.items() if k != "format"})


def with_formats(schema: Any, mode: str) -> Any:
    """The schema the grammar gets under a task's `format` option (`FORMAT_MODES`)."""
    return without_formats(schema) if mode == "annotation" else schema
