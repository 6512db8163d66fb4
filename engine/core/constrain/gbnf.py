"""llama.cpp's own JSON Schema -> GBNF grammar, kept selectable to compare against LLGuidance.

Not the default: llama-cpp-python's converter lets raw control characters into strings, silently
drops keywords it does not know, and llama.cpp's grammar sampler costs milliseconds per token on a
49k vocabulary (see the schema-coverage benchmark). It shares the Matcher protocol so the decoding
loop and the benchmark can run either engine.
"""

from __future__ import annotations

import ctypes
import json
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import json_schema_to_gbnf
from loupe.core.errors import ConstraintError

# llama_token_data {int32 id; float logit; float p} as a numpy record, so whole arrays are filled at C speed
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class GbnfMatcher:
    """One generation's state in llama.cpp's grammar sampler."""

    def __init__(self, vocab: Any, grammar: str, eos: list[int], n_vocab: int) -> None:
        self._smpl = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not self._smpl:
            raise ConstraintError("llama.cpp refused the GBNF grammar")
        self._eos, self._n_vocab = eos, n_vocab
        self._all = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._all["id"] = np.arange(n_vocab, dtype=np.int32)
        self._one = np.zeros(1, dtype=_TOKEN_DATA)
        self._ok = True

    def _apply(self, buf: np.ndarray) -> np.ndarray:
        """Run the grammar over the candidates in `buf`; True where a token stays allowed."""
        buf["logit"] = 0.0
        arr = llama_cpp.llama_token_data_array(
            data=buf.ctypes.data_as(llama_cpp.llama_token_data_p), size=len(buf), selected=-1, sorted=False
        )
        llama_cpp.llama_sampler_apply(self._smpl, ctypes.byref(arr))
        return np.isfinite(buf["logit"])

    def allows(self, token: int) -> bool:
        """Whether one token is allowed now (cheap: a one-candidate apply)."""
        self._one["id"] = token
        return bool(self._apply(self._one)[0])

    def fill_mask(self, mask: np.ndarray) -> None:
        """The full-vocabulary mask (what a sampler costs per token with this engine)."""
        allowed = self._apply(self._all)
        bits = np.zeros(mask.size * 32, dtype=np.uint8)
        bits[: self._n_vocab] = allowed
        mask[:] = np.packbits(bits, bitorder="little").view(np.int32)

    def consume(self, token: int) -> bool:
        """Advance by `token` if allowed (llama.cpp aborts on accepting a disallowed token)."""
        if not self._ok or not self.allows(token):
            self._ok = False
            return False
        llama_cpp.llama_sampler_accept(self._smpl, token)
        return True

    def forced_tokens(self) -> list[int]:
        """llama.cpp's grammar sampler cannot tell; the decoding loop samples every token."""
        return []

    def is_accepting(self) -> bool:
        """Complete when an end-of-generation token is allowed."""
        return self._ok and any(self.allows(t) for t in self._eos)

    def is_stopped(self) -> bool:
        """GBNF never reports 'only EOS may follow' cheaply; the decoding loop sees it in the mask."""
        return False

    def error(self) -> str:
        """See `Matcher.error`."""
        return "" if self._ok else "token rejected by the grammar"

    def __del__(self) -> None:
        if getattr(self, "_smpl", None):
            llama_cpp.llama_sampler_free(self._smpl)
            self._smpl = None


class GbnfConstraint:
    """A GBNF grammar for one llama.cpp vocabulary."""

    def __init__(self, vocab: Any, source: str, eos: list[int], n_vocab: int) -> None:
        self._vocab, self.source, self._eos, self._n_vocab = vocab, source, eos, n_vocab

    def matcher(self) -> GbnfMatcher:
        """A fresh grammar sampler."""
        return GbnfMatcher(self._vocab, self.source, self._eos, self._n_vocab)


class GbnfCompiler:
    """Compiles schemas with llama-cpp-python's converter (comparison engine, not the default)."""

    name = "gbnf"

    def __init__(self, vocab: Any, eos: list[int]) -> None:
        self._vocab, self._eos = vocab, eos
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))

    def compile(self, schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> GbnfConstraint:
        """Convert and check the grammar (refusals are not offered by this engine)."""
        try:
            source = json_schema_to_gbnf(json.dumps(schema if schema is not True else {}))
        except Exception as exc:  # the converter raises bare Exceptions, KeyErrors, RecursionErrors...
            raise ConstraintError(f"GBNF conversion failed: {type(exc).__name__}: {exc}") from None
        probe = llama_cpp.llama_sampler_init_grammar(self._vocab, source.encode(), b"root")
        if not probe:
            raise ConstraintError("llama.cpp could not parse the converted GBNF grammar")
        llama_cpp.llama_sampler_free(probe)
        return GbnfConstraint(self._vocab, source, self._eos, self._n_vocab)
