"""Locate every leaf value of a JSON text by byte offsets, to tie tokens to JSON Pointers."""

from __future__ import annotations

import re

_WS = re.compile(rb"[ \t\n\r]*")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class _Scanner:
    def __init__(self, text: bytes) -> None:
        self.text = text
        self.pos = 0
        self.spans: dict[str, tuple[int, int]] = {}

    def ws(self) -> None:
        m = _WS.match(self.text, self.pos)
        self.pos = m.end() if m else self.pos

    def value(self, pointer: str) -> None:
        self.ws()
        start = self.pos
        c = self.text[start : start + 1]
        if c == b"{":
            self.obj(pointer, start)
        elif c == b"[":
            self.arr(pointer, start)
        elif c == b'"':
            self.pos = self._match(_STRING)
            self.spans[pointer] = (start, self.pos)
        else:
            for lit in (b"true", b"false", b"null"):
                if self.text.startswith(lit, start):
                    self.pos = start + len(lit)
                    break
            else:
                self.pos = self._match(_NUMBER)
            self.spans[pointer] = (start, self.pos)

    def _match(self, pattern: re.Pattern[bytes]) -> int:
        m = pattern.match(self.text, self.pos)
        if not m:
            raise ValueError(f"not JSON at byte {self.pos}")
        return m.end()

    def obj(self, pointer: str, start: int) -> None:
        import json

        self.pos += 1
        self.ws()
        if self.text[self.pos : self.pos + 1] == b"}":
            self.pos += 1
            self.spans[pointer] = (start, self.pos)  # an empty object is a leaf
            return
        while True:
            self.ws()
            kstart = self.pos
            self.pos = self._match(_STRING)
            key = json.loads(self.text[kstart : self.pos])
            self.ws()
            self.pos += 1  # ':'
            self.value(f"{pointer}/{_esc(key)}")
            self.ws()
            c = self.text[self.pos : self.pos + 1]
            self.pos += 1
            if c == b"}":
                return
            if c != b",":
                raise ValueError(f"not JSON at byte {self.pos - 1}")

    def arr(self, pointer: str, start: int) -> None:
        self.pos += 1
        self.ws()
        if self.text[self.pos : self.pos + 1] == b"]":
            self.pos += 1
            self.spans[pointer] = (start, self.pos)  # an empty array is a leaf
            return
        i = 0
        while True:
            self.value(f"{pointer}/{i}")
            i += 1
            self.ws()
            c = self.text[self.pos : self.pos + 1]
            self.pos += 1
            if c == b"]":
                return
            if c != b",":
                raise ValueError(f"not JSON at byte {self.pos - 1}")


def leaf_spans(text: bytes, offset: int = 0) -> dict[str, tuple[int, int]]:
    """JSON Pointer -> (start, end) byte offsets of each leaf (scalar, empty array or object).

    `text` must be one valid JSON document (callers parse it with `json.loads` first); offsets are
    shifted by `offset`, for a document that starts inside a longer output.
    """
    s = _Scanner(text)
    s.value("")
    return {p: (a + offset, b + offset) for p, (a, b) in s.spans.items()}
