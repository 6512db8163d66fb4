"""Byte-level BPE vocabularies and chat templates for the synthetic SmolVLM / Gemma 3 test models.

The compact vocabulary (tests) has only hand-made merge chains, so most text splits into single bytes. A vocabulary
with the real size (benchmarks) also gets ~9k merges learned from English text (`synthetic_merges.txt`, made once
by `python -m loupe.models.synthetic_vocab`), so a prompt becomes about as many tokens as a real tokenizer makes
(~3.4 characters per token for English, ~2.7 for the JSON Schema in a prompt) and prefill times are realistic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from gguf import TokenType
from loupe.models.chat_templates import GEMMA3_CHAT_TEMPLATE, SMOLVLM_CHAT_TEMPLATE  # noqa: F401  (re-exported)

# Pieces that get a merge chain each: JSON punctuation as the `smollm` pre-tokenizer splits it, whitespace runs,
# and common English / JSON-key words, bare and with a leading space.
_PUNCT = [
    '{"',
    '":',
    '",',
    '"}',
    '"]',
    '[{"',
    "},",
    "}]",
    '"},',
    '"],',
    '":[',
    '":{',
    ' "',
    " {",
    " [",
    " }",
    " ]",
    " },",
    " ],",
    ' "",',
    ' ""',
    ": ",
    ", ",
    ". ",
    ".\n",
    ",\n",
    "\n\n",
    "\n\n\n",
    "  ",
    "   ",
    "    ",
    "        ",
    "\n ",
    "\n  ",
    "\n    ",
    "...",
    " -",
    " (",
    ").",
    "),",
    "'s",
    " $",
    "%,",
    " #",
]
_WORD_TEXT = """the of and to in is for on with as at by from this that it be are was or an not no yes has have
image photo picture text name date time total price amount number value type title description items item
address phone email invoice receipt store shop quantity qty tax subtotal currency color label category
summary caption objects object count person people document page line lines first last city country state
street code id key list true false null unknown other main left right top bottom small large red green blue
black white there which what where when how many one two three four five"""
_WORDS = _WORD_TEXT.split()


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    ids: dict[str, int]  # special token text -> id


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character map (what byte-level BPE vocabularies store)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@cache
def _bpe_core() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """256 byte tokens plus merge-chain tokens, and the merges (rank = list order)."""
    b2u = _byte_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    seen, merges, ranks = set(tokens), [], {}
    pieces = _PUNCT + _WORDS + [" " + w for w in _WORDS] + [w.capitalize() for w in _WORDS[:40]]
    for piece in pieces:
        # tokenize with the merges so far, then chain-merge what is left, so each piece becomes one token
        symbols = _apply_bpe([b2u[b] for b in piece.encode("utf-8")], ranks)
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(f"{pair[0]} {pair[1]}")
            symbols = _apply_bpe([pair[0] + pair[1], *symbols[2:]], ranks)
            if symbols[0] not in seen:
                seen.add(symbols[0])
                tokens.append(symbols[0])
    return tuple(tokens), tuple(merges)


MERGES_FILE = Path(__file__).with_name("synthetic_merges.txt")


@cache
def _learned() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The core's tokens plus the learned merges' tokens; the learned merges rank first (so English splits as the
    trained tokenizer splits it), the hand-made chains after them (JSON punctuation, whitespace runs)."""
    core, chains = _bpe_core()
    tokens, seen, merges = list(core), set(core), []
    for line in MERGES_FILE.read_text(encoding="utf-8").splitlines():
        left, right = line.split(" ")
        if left not in seen or right not in seen:
            continue
        merges.append(line)
        if left + right not in seen:
            seen.add(left + right)
            tokens.append(left + right)
    known = set(merges)
    return tuple(tokens), tuple(merges + [m for m in chains if m not in known])


def train_merges(out: Path = MERGES_FILE, vocab_size: int = 20_000) -> int:
    """Learn byte-level BPE merges from the English of Python's own documentation (`pydoc_data`, in the standard
    library, so nothing is downloaded) with the `tokenizers` trainer, and write them one per line."""
    import json
    import pydoc_data.topics

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(sorted(pydoc_data.topics.topics.values()), trainer)
    merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(tok.to_str())["model"]["merges"]]
    out.write_text("".join(m + "\n" for m in merges), encoding="utf-8")
    return len(merges)


def _apply_bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Standard BPE: repeatedly merge the adjacent pair with the lowest rank."""
    while len(symbols) > 1:
        best = min(range(len(symbols) - 1), key=lambda i: ranks.get((symbols[i], symbols[i + 1]), 1 << 30))
        if (symbols[best], symbols[best + 1]) not in ranks:
            break
        symbols = [*symbols[:best], symbols[best] + symbols[best + 1], *symbols[best + 2 :]]
    return symbols


def _filler(index: int) -> str:
    """A distinct, word-like normal token text (lower-case letters, every other one with a leading space)."""
    letters, n = "", index // 2
    while True:
        letters = chr(ord("a") + n % 26) + letters
        n = n // 26 - 1
        if n < 0:
            break
    return ("Ġ" if index % 2 else "") + "zz" + letters


def _family_specials(family: str) -> tuple[list[tuple[int, str]], int]:
    """(real id, text) of the special tokens, and the real id where the byte tokens start."""
    if family == "smolvlm":
        head = [
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<repo_name>",
            "<reponame>",
            "<file_sep>",
            "<filename>",
            "<gh_stars>",
            "<issue_start>",
            "<issue_comment>",
            "<issue_closed>",
            "<jupyter_start>",
            "<jupyter_text>",
            "<jupyter_code>",
            "<jupyter_output>",
            "<jupyter_script>",
            "<empty_output>",
        ]
        specials = list(enumerate(head))
        specials.append((49152, "<global-img>"))
        specials += [(49153 + 6 * (r - 1) + (c - 1), f"<row_{r}_col_{c}>") for r in range(1, 7) for c in range(1, 7)]
        specials += [(49189, "<fake_token_around_image>"), (49190, "<image>"), (49279, "<end_of_utterance>")]
        return specials, len(head)
    if family == "gemma3":
        specials = [
            (0, "<pad>"),
            (1, "<eos>"),
            (2, "<bos>"),
            (3, "<unk>"),
            (4, "<mask>"),
            (105, "<start_of_turn>"),
            (106, "<end_of_turn>"),
            (255999, "<start_of_image>"),
            (256000, "<end_of_image>"),
        ]
        return specials, 107
    raise ValueError(f"unknown family {family!r}")


def build_vocab(family: str, vocab_size: int = 0) -> Vocab:
    """The family's special tokens + byte-level BPE core. vocab_size 0 = compact (specials kept in order, ids
    renumbered); otherwise specials sit at their real ids, the learned merges' tokens follow the core, and
    word-like filler tokens pad to vocab_size."""
    specials, flow_start = _family_specials(family)
    core, merges = _bpe_core() if vocab_size == 0 else _learned()
    by_id: dict[int, str] = {}
    if vocab_size == 0:
        head = [t for i, t in specials if i < flow_start]
        tail = [t for i, t in specials if i >= flow_start]
        ordered = head + list(core) + tail
        by_id = dict(enumerate(ordered))
        size = len(ordered)
    else:
        by_id = dict(specials)
        for offset, tok in enumerate(core):
            if flow_start + offset in by_id:
                raise ValueError("BPE core overlaps a special token id")
            by_id[flow_start + offset] = tok
        size = vocab_size
    special_texts = {t for _, t in specials}
    taken = set(by_id.values())
    tokens, types, filler = [], [], 0
    for i in range(size):
        tok = by_id.get(i)
        if tok is None:
            while (tok := _filler(filler)) in taken:
                filler += 1
            filler += 1
        tokens.append(tok)
        types.append(TokenType.CONTROL if tok in special_texts else TokenType.NORMAL)
    ids = {t: tokens.index(t) for t in special_texts} if vocab_size == 0 else {t: i for i, t in specials}
    return Vocab(tokens=tokens, types=[int(t) for t in types], merges=list(merges), ids=ids)


if __name__ == "__main__":
    print(f"wrote {train_merges()} merges to {MERGES_FILE}")
