"""The constrained decoding loop shared by backends whose model hands back next-token logits as numpy.

Same rules as the llama.cpp backend's loop: at each step the compiled constraint's bitmask selects the
allowed tokens among the last logits; the chosen token's probability is renormalized over that set (a
token that was the only choice has probability 1); tokens the constraint forces are fast-forwarded
without sampling and counted certain; at the first step the refusal branch is gated (constrain.base).
Each token is handed to `request.on_token` (when set) as soon as it is chosen. Each step also records the share of
the model's whole probability that the constraint allowed (`TokenStep.mass`). With `request.limits` set, a runaway
guard (loupe.core.constrain.runaway) narrows the choice when a value runs on, and ends a looping attempt (stop `loop`).
A backend supplies `first` (logits after prefill) and `feed(tokens) -> logits after them`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from loupe.backends.base import Generation, GenerationRequest, OnToken
from loupe.core.confidence import TokenStep
from loupe.core.constrain.base import REFUSAL_CONFIRM, REFUSAL_PREFIX, allowed_ids, gate_refusal, mask_words
from loupe.core.constrain.runaway import Guard, TokenTables, token_tables
from loupe.core.errors import BackendError

Feed = Callable[[list[int]], np.ndarray]
FirstLogits = Callable[[GenerationRequest, dict[str, float]], tuple[np.ndarray, Any, int, int]]
"""prefill(request, timings) -> (logits for the first output token, the KV cache, prompt tokens, image tokens)"""
Feeder = Callable[[Any, int], Feed]
"""feeder(cache, n_prompt) -> the feed that continues from that cache"""


@dataclass(frozen=True)
class TokenVocab:
    """What the loop needs to know about a tokenizer: its size, each token's bytes, and end tokens."""

    n_vocab: int
    piece: Callable[[int], bytes]
    eog: frozenset[int]

    @cached_property
    def tables(self) -> TokenTables:
        """What the runaway guard asks of each token's bytes (built on first use)."""
        return token_tables(self.n_vocab, self.piece)


def decode(
    request: GenerationRequest,
    vocab: TokenVocab,
    first: np.ndarray,
    feed: Feed,
    *,
    n_past: int,
    n_ctx: int,
    timings: dict[str, float],
    cancel: threading.Event | None = None,
) -> Generation:
    """Decode under `request.constraint` from the logits `first`; stops are values on `Generation.stop`."""
    if request.constraint is None:
        raise BackendError("this backend needs a compiled constraint")
    matcher = request.constraint.matcher()
    mask = np.zeros(mask_words(vocab.n_vocab), dtype=np.int32)
    rng = np.random.default_rng(request.seed)
    out = bytearray()
    steps: list[TokenStep] = []
    constraint_s = 0.0
    logits = first
    stop = "max_tokens"
    guard = Guard(request.limits, vocab.tables) if request.limits is not None else None
    while len(steps) < request.max_tokens:
        if cancel is not None and cancel.is_set():
            stop = "cancelled"
            break
        tc = time.perf_counter()
        matcher.fill_mask(mask)
        allowed = allowed_ids(mask, vocab.n_vocab)
        constraint_s += time.perf_counter() - tc
        if matcher.is_stopped() or allowed.size == 0:
            stop = "eos"
            break
        gate = request.allow_refusal and not steps
        # the model's unnormalized probabilities over the whole vocabulary, once per step: the allowed share and the
        # guard's "would the model rather end this value" both read them
        weights = np.exp(logits - logits.max(), dtype=np.float32)
        among = guard.narrow(allowed, weights) if guard is not None else allowed
        if not steps and not request.allow_refusal:  # the constraint may still hold the branch: never take it
            among = among[vocab.tables.first_bytes[among] != REFUSAL_PREFIX.encode()[0]]
            among = among if among.size else allowed
        token, prob, mass = choose(
            logits, allowed, request.temperature, rng, vocab.piece, gate_refusal_now=gate, among=among, weights=weights
        )
        if not matcher.consume(token):
            raise BackendError(f"constraint rejected its own token {token}: {matcher.error()}")
        if token in vocab.eog:
            stop = "eos"
            break
        if guard is not None and guard.ended_by_guard and among.size < allowed.size:
            guard.doubt(prob)
        batch = [token]
        _append(
            out,
            steps,
            vocab.piece(token),
            prob,
            forced=allowed.size == 1,
            on_token=request.on_token,
            mass=mass,
            guard=guard,
        )
        if gate and out.startswith(REFUSAL_PREFIX.encode()[:1]):
            # a refusal must be meant: the model itself, unconstrained, must go on spelling what the grammar forces
            logits, n_past, meant = _confirm_refusal(matcher, vocab, feed, batch, n_past, out, steps, request)
            timings["refusal_meant"] = meant
            if meant < REFUSAL_CONFIRM:
                stop = "refusal_unmeant"
                break
            continue
        tc = time.perf_counter()
        forced = matcher.forced_tokens()
        constraint_s += time.perf_counter() - tc
        for t in forced[: request.max_tokens - len(steps)]:
            if t in vocab.eog or not matcher.consume(t):
                break
            _append(out, steps, vocab.piece(t), 1.0, forced=True, on_token=request.on_token, guard=guard)
            batch.append(t)
        if matcher.is_stopped():
            stop = "eos"
            break
        if guard is not None and guard.loop is not None:
            stop = "loop"
            break
        if n_past + len(batch) >= n_ctx or len(steps) >= request.max_tokens:
            break
        logits = feed(batch)
        n_past += len(batch)
    timings["constraint_ms"] = constraint_s * 1000
    gen = Generation(text=out.decode("utf-8", errors="replace"), steps=steps, stop=stop)  # type: ignore[arg-type]
    gen.loop = guard.loop if guard is not None and stop == "loop" else None
    if guard is not None:
        gen.doubts = [(a, b, p) for a, b, p in guard.doubts if b is not None]
    return gen


def prefill_and_decode(
    request: GenerationRequest,
    vocab: TokenVocab,
    first_logits: FirstLogits,
    feeder: Feeder,
    *,
    n_ctx: int,
    cancel: threading.Event | None = None,
) -> Generation:
    """Prefill, then `decode`; the Generation carries the prompt/image token counts and every stage's timings."""
    timings: dict[str, float] = {}
    first, cache, n_prompt, n_image = first_logits(request, timings)
    t1 = time.perf_counter()
    gen = decode(
        request, vocab, first, feeder(cache, n_prompt), n_past=n_prompt, n_ctx=n_ctx, timings=timings, cancel=cancel
    )
    timings["decode_ms"] = (time.perf_counter() - t1) * 1000
    gen.prompt_tokens, gen.image_tokens, gen.timings = n_prompt, n_image, timings
    return gen


def _confirm_refusal(
    matcher: Any,
    vocab: TokenVocab,
    feed: Feed,
    batch: list[int],
    n_past: int,
    out: bytearray,
    steps: list[TokenStep],
    request: GenerationRequest,
) -> tuple[np.ndarray, int, float]:
    """Feed the refusal prefix the grammar forces one token at a time, multiplying the model's own (unconstrained)
    probability of each; stops below REFUSAL_CONFIRM. Returns the logits after what was fed, n_past, and that
    product. A random-weight model gives its forced tokens about 1/vocabulary each; a model told to refuse, most."""
    logits = feed(batch)
    n_past += len(batch)
    meant = 1.0
    prefix = REFUSAL_PREFIX.encode()
    for t in matcher.forced_tokens():
        if len(out) >= len(prefix) or len(steps) >= request.max_tokens:
            break
        top = float(logits.max())
        meant *= float(np.exp(float(logits[t]) - top) / np.exp(logits - top, dtype=np.float32).sum(dtype=np.float64))
        if meant < REFUSAL_CONFIRM or not matcher.consume(t):
            break
        _append(out, steps, vocab.piece(t), 1.0, forced=True, on_token=request.on_token)
        logits = feed([t])
        n_past += 1
    return logits, n_past, meant


def _append(
    out: bytearray,
    steps: list[TokenStep],
    piece: bytes,
    prob: float,
    *,
    forced: bool,
    on_token: OnToken | None,
    mass: float = 1.0,
    guard: Guard | None = None,
) -> None:
    step = TokenStep(len(out), len(out) + len(piece), prob, forced, mass)
    steps.append(step)
    out += piece
    if guard is not None:
        guard.feed(piece)
    if on_token is not None:
        on_token(piece, step)


def choose(
    logits: np.ndarray,
    allowed: np.ndarray,
    temperature: float,
    rng: np.random.Generator,
    piece: Callable[[int], bytes],
    *,
    gate_refusal_now: bool,
    among: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[int, float, float]:
    """Pick among the allowed tokens (or the subset `among` of them, e.g. narrowed by a runaway guard); return it with
    its probability renormalized over all the allowed tokens, and the share of the model's probability they hold."""
    if int(allowed[-1]) >= logits.shape[-1]:
        raise BackendError(f"the constraint allows token {int(allowed[-1])} beyond the model's {logits.shape[-1]}")
    top = float(logits.max())
    sub = logits[allowed].astype(np.float64) - top
    p = np.exp(sub)
    allowed_sum = float(p.sum())
    if weights is None:  # exp(logits - max) over the whole vocabulary
        weights = np.exp(logits - top, dtype=np.float32)
    mass = min(1.0, allowed_sum / float(weights.sum(dtype=np.float64)))
    p /= allowed_sum
    if allowed.size == 1:
        return int(allowed[0]), 1.0, mass
    pick = np.ones(allowed.size, dtype=bool) if among is None or among.size == allowed.size else np.isin(allowed, among)
    if gate_refusal_now:
        first = REFUSAL_PREFIX[:1].encode()
        keep = gate_refusal(p, np.array([piece(int(t)).startswith(first) for t in allowed]))
        if not keep.all():
            if not (pick & keep).any():
                pick = keep
            pick &= keep
            allowed, sub, p = allowed[keep], sub[keep], p[keep] / p[keep].sum()
            pick = pick[keep]
            if allowed.size == 1:
                return int(allowed[0]), 1.0, mass
    idx = np.flatnonzero(pick)
    if temperature <= 0:
        j = int(idx[np.argmax(p[idx])])
    else:
        q = np.exp((sub[idx] - sub[idx].max()) / temperature)
        j = int(idx[rng.choice(len(q), p=q / q.sum())])
    return int(allowed[j]), float(p[j]), mass


def eog_set(ids: Sequence[int | None]) -> frozenset[int]:
    """The end-of-generation ids, ignoring unset ones."""
    return frozenset(int(i) for i in ids if i is not None and int(i) >= 0)
