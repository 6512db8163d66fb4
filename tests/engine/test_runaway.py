"""The runaway guard's logic on byte-level tokens: numbers and strings that may only end, loops found and retried."""

from __future__ import annotations

import numpy as np
from loupe.core.constrain.runaway import LOOP_BYTES, NUMBER_CHARS, Guard, Limits, Loop, token_tables

# a byte vocabulary: token i is the byte i
PIECES = [bytes([i]) for i in range(256)] + [b"\\u", b'"}', b"00", b'",', b", "]
TABLES = token_tables(len(PIECES), lambda t: PIECES[t])
ALL = np.arange(len(PIECES))


def _guard(limits: Limits, text: bytes) -> Guard:
    g = Guard(limits, TABLES)
    g.feed(text)
    return g


def _pieces(ids: np.ndarray) -> set[bytes]:
    return {PIECES[int(t)] for t in ids}


def test_a_long_number_may_only_end():
    g = _guard(Limits(), b'{"w": 0.' + b"0" * (NUMBER_CHARS - 3))
    assert g.kind == "number" and len(g.current) == NUMBER_CHARS - 1
    assert g.narrow(ALL).size == ALL.size  # one digit more is still allowed
    g.feed(b"5")
    left = _pieces(g.narrow(ALL))
    assert b"5" not in left and b"00" not in left and b"." not in left
    assert b"}" in left and b"," in left and b'"}' in left


def test_a_long_string_may_only_close_and_a_schema_maxlength_raises_the_bound():
    limits = Limits.for_task({"type": "string"}, max_tokens=256)
    assert limits.string_chars == 128
    assert Limits.for_task({"type": "string", "maxLength": 900}, max_tokens=256).string_chars == 900
    assert Limits.for_task({"type": "number", "maximum": 1e30}, 256).number_chars == NUMBER_CHARS  # 1e+30 is short
    assert Limits.for_task({"type": "number", "minimum": 0.123456789012345678901}, 256).number_chars >= NUMBER_CHARS
    g = _guard(limits, b'{"s": "' + "é".encode() * 127)
    assert g.narrow(ALL).size == ALL.size
    g.feed("é".encode())
    assert _pieces(g.narrow(ALL)) == {b'"', b'"}', b'",'}  # characters, not bytes, are counted
    g.feed(b'"')
    assert g.kind == "" and g.narrow(ALL).size == ALL.size


def test_escapes_are_followed_so_an_escaped_quote_does_not_end_the_string():
    g = _guard(Limits(), b'{"s": "a\\"b\\\\')
    assert g.kind == "string" and bytes(g.current) == b'a\\"b\\\\'
    g.feed(b'"')
    assert g.kind == ""


def test_a_repeating_value_is_a_loop_with_where_it_began_and_a_varied_one_is_not():
    g = _guard(Limits(), b'{"a": "x", "note": "Lorem ' + b"ipsum " * 10)
    # value 3 (keys count); "m ipsu" repeats from character 4; one whole "ipsum " is kept on the retry
    assert g.loop == Loop(value=3, start=4, unit=b"ipsum ", keep=len("Lorem ipsum "))
    plain = _guard(Limits(), b'{"note": "' + bytes(range(65, 65 + 26)) * 2)  # 52 bytes, two repeats only
    assert plain.loop is None
    short = _guard(Limits(), b'{"n": "' + b"ab" * (LOOP_BYTES // 2 - 1))
    assert short.loop is None  # under LOOP_BYTES
    off = _guard(Limits(loop="off"), b'{"n": "' + b"ab" * LOOP_BYTES)
    assert off.loop is None


def test_after_a_loop_the_value_is_cut_and_new_loops_close_at_once():
    first = _guard(Limits(), b'{"note": "go ' + b"on " * 20)
    assert first.loop is not None
    retry = Limits().after_loop(first.loop)
    assert retry.loop == "close" and retry.cut == ((1, len("go on ")),)
    g = _guard(retry, b'{"note": "go on ')  # the cut keeps one unit: "go on "
    assert _pieces(g.narrow(ALL)) == {b'"', b'"}', b'",'}
    other = _guard(retry, b'{"title": "a", "note": "' + b"zz" * 40)
    assert other.loop is None and other.closing and _pieces(other.narrow(ALL)) == {b'"', b'"}', b'",'}


def test_a_loop_through_unicode_escapes_is_retried_without_them():
    g = _guard(Limits(), b'{"path": "C:' + b"\\u001c" * 10)
    assert g.loop is not None
    retry = Limits().after_loop(g.loop)
    assert not retry.unicode_escapes and retry.cut == ()
    again = _guard(retry, b'{"path": "C:\\')
    left = _pieces(again.narrow(ALL))
    assert b"u" not in left and b"\\u" not in left and b"\\" in left and b"U" in left
    mid = _guard(retry, b'{"path": "C:')
    assert b"\\u" not in _pieces(mid.narrow(ALL)) and b"\\" in _pieces(mid.narrow(ALL))


def test_a_value_ends_where_the_model_would_rather_end_it_even_through_a_token_the_schema_forbids():
    g = _guard(Limits(), b'{"row": 1')
    allowed = np.array([ord(c) for c in "0123456789}"])  # the last property: "," is not allowed
    logits = np.full(len(PIECES), -20.0, dtype=np.float32)
    logits[ord(",")] = 2.0  # the model wants another key, which the schema forbids
    logits[ord("0")] = 1.5  # its best allowed choice would be a digit
    assert _pieces(g.narrow(allowed, np.exp(logits - logits.max()))) == {b"}"}
    logits[ord("0")] = 3.0  # it wants more digits more than it wants to end
    assert g.narrow(allowed, np.exp(logits - logits.max())).size == allowed.size
    s = _guard(Limits(), b'{"name": "Ana')
    words = np.array([ord(c) for c in 'abc"'])
    logits = np.full(len(PIECES), -20.0, dtype=np.float32)
    logits[PIECES.index(b'"}')] = 2.0  # close the string and the object (not allowed here)
    logits[ord("a")] = 1.0
    assert _pieces(s.narrow(words, np.exp(logits - logits.max()))) == {b'"'}


def test_an_array_holding_its_limit_of_items_may_only_close_and_nested_commas_do_not_count():
    limits = Limits.for_task({"type": "array"}, max_tokens=256)
    assert limits.array_items == 16
    assert Limits.for_task({"type": "array", "maxItems": 40}, max_tokens=256).array_items == 40
    g = _guard(limits, b'{"stops": [' + b", ".join(b'"%d"' % i for i in range(15)))
    assert g.narrow(ALL).size == ALL.size  # 15 items: one more may come
    g.feed(b', "15"')
    left = _pieces(g.narrow(ALL))
    assert b"]" in left and b"," not in left and b", " not in left and b"5" in left
    item = _guard(limits, b'{"stops": [' + b", ".join(b'"%d"' % i for i in range(15)) + b', "15')
    assert b'",' not in _pieces(item.narrow(ALL)) and b'"' in _pieces(item.narrow(ALL))  # may end, not go on
    nested = _guard(limits, b'{"rows": [' + b", ".join(b'{"a": 1, "b": 2, "c": 3}' for _ in range(5)))
    assert nested.narrow(ALL).size == ALL.size  # 5 items, whatever the commas inside them


def test_past_three_quarters_of_the_budget_values_end_and_containers_close():
    limits = Limits.for_task({"type": "object"}, max_tokens=64)
    g = _guard(limits, b'{"items": [{"name": "bolt"}, {"name": "nu')
    for piece in [b"t"] * 46:  # 47 tokens fed: under 75 % of 64
        assert g.narrow(ALL).size == ALL.size
        g.feed(piece)
    assert g.spent == 47 and not g.wrapping_up
    g.feed(b"t")
    assert g.wrapping_up and _pieces(g.narrow(ALL)) == {b'"', b'"}'}  # close, and add no key
    g.feed(b'"}')
    left = _pieces(g.narrow(ALL))
    assert b"]" in left and b"," not in left and b", " not in left


def test_what_the_guard_ends_against_the_models_wish_is_recorded_as_a_doubt_over_its_bytes():
    from loupe.core.confidence import capped

    limits = Limits.for_task({"type": "array"}, max_tokens=256)
    text = b'{"s": [' + b", ".join(b'"%d"' % i for i in range(15)) + b', "15'
    g = _guard(limits, text)
    narrowed = g.narrow(ALL)
    assert g.ended_by_guard and g.doubt_scope == "container" and narrowed.size < ALL.size
    g.doubt(0.03)
    g.feed(b'"')
    g.feed(b"]}")
    assert g.doubts == [[text.index(b"["), len(text) + 2, 0.03]]  # from "[" to after "]"
    spans = {"/s/0": (text.index(b'"0"'), text.index(b'"0"') + 3), "/x": (0, 2)}
    assert capped({"/s/0": 0.9, "/x": 0.8}, spans, [(7, len(text) + 2, 0.03)]) == {"/s/0": 0.03, "/x": 0.8}
    n = _guard(Limits(number_chars=4), b'{"n": 1234')
    n.narrow(ALL)
    assert n.ended_by_guard and n.doubt_scope == "value"
    n.doubt(0.2)
    n.feed(b"}")
    assert n.doubts == [[6, 10, 0.2]]  # the digits
    wish = _guard(Limits(), b'{"row": 1')
    logits = np.full(len(PIECES), -20.0, dtype=np.float32)
    logits[ord(",")] = 2.0
    wish.narrow(np.array([ord("0"), ord("}")]), np.exp(logits - logits.max()))
    assert not wish.ended_by_guard  # the model's own wish to end is no doubt
