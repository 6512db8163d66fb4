"""python -m bench.real_text [--json OUT]: the real Gemma 3 270M through Loupe on tasks whose answer is in their text.

Real weights show what random ones cannot: whether the constrained decoder, the confidence and the refusal gate
behave when a model wants something. Each decoding configuration runs every task of bench.real_text_tasks through
the product path (Engine over the model worker, text only: the answer is in the instructions, an image would only
add noise) and is scored against the right answers: outcome counts, runaways, field accuracy, confidence AUROC and
ECE (and of the variants in CONFIDENCES), the review threshold, tokens and time. The same prompts then go through
llama-cpp-python's own JSON-schema path (its GBNF from the schema, greedy), side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.base import Generation, GenerationRequest
from loupe.backends.worker import WorkerBackend
from loupe.core.confidence import TokenStep, field_confidence
from loupe.core.schema.spans import leaf_spans
from loupe.core.schema.validate import validation_errors
from loupe.core.tasks import TaskOptions, task_from_dict
from loupe.core.types import Result, Status
from loupe.models.real import real_gemma3_270m

from bench._models import DEFAULT_DIR
from bench.real_text_tasks import TASKS, RealTask

MAX_TOKENS = 256
CONFIGS: dict[str, dict[str, Any]] = {
    "before": {"layout": "compact", "runaway_guard": False},  # the decoding of session 5
    "compact+guard": {"layout": "compact", "runaway_guard": True},
    "spaced+guard": {"layout": "spaced", "runaway_guard": True},  # the default
}


def _joint(steps: Sequence[TokenStep], spans: dict[str, tuple[int, int]], *, unconstrained: bool) -> dict[str, float]:
    """Per leaf: the product of its tokens' probabilities (renormalized, or the model's own)."""
    out = {}
    for pointer, (a, b) in spans.items():
        p = 1.0
        for s in steps:
            if s.start < b and s.end > a and s.end > s.start:
                p *= s.prob * s.mass if unconstrained else s.prob
        out[pointer] = p
    return out


CONFIDENCES: dict[str, Callable[[Sequence[TokenStep], dict[str, tuple[int, int]]], dict[str, float]]] = {
    "min p' (renormalised)": field_confidence,
    "min p' x allowed share (model's own)": lambda steps, spans: field_confidence(steps, spans, unconstrained=True),
    "product p'": lambda steps, spans: _joint(steps, spans, unconstrained=False),
    "product p' x allowed share": lambda steps, spans: _joint(steps, spans, unconstrained=True),
}


class Recording:
    """The backend, with the last generation kept (its steps score the confidence variants)."""

    def __init__(self, backend: WorkerBackend) -> None:
        self._backend = backend
        self.last: Generation | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def generate(self, request: GenerationRequest, *, cancel: Any = None) -> Generation:
        self.last = self._backend.generate(request, cancel=cancel)
        return self.last


@dataclass
class Run:
    """One task's outcome under one configuration."""

    task: RealTask
    result: Result
    attempts: list[dict[str, Any]] = field(default_factory=list)
    variants: dict[str, dict[str, float]] = field(default_factory=dict)


def leaves(value: Any, pointer: str = "") -> dict[str, Any]:
    """JSON Pointer -> scalar (empty containers count as leaves, as in loupe.core.schema.spans)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(leaves(v, f"{pointer}/{str(k).replace('~', '~0').replace('/', '~1')}"))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(leaves(v, f"{pointer}/{i}"))
        return out
    return {pointer: value}


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values (1 == 1.0, but True != 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
    return bool(a == b)


def field_marks(task: RealTask, data: Any) -> dict[str, bool]:
    """Per leaf the output holds: right or wrong against the answer."""
    want = leaves(task.answer) if task.answer is not None else {}
    return {p: p in want and same(v, want[p]) for p, v in leaves(data).items()}


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Probability that a right field scores above a wrong one (ties count half); None without both kinds."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if not pos.size or not neg.size:
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def ece(scores: Sequence[float], labels: Sequence[bool], bins: int = 10) -> float | None:
    """Expected calibration error over equal-width bins."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=float)
    if not s.size:
        return None
    idx = np.minimum((s * bins).astype(int), bins - 1)
    return float(
        sum(abs(s[idx == b].mean() - y[idx == b].mean()) * (idx == b).sum() for b in range(bins) if (idx == b).any())
        / s.size
    )


def review(runs: Sequence[Run], threshold: float, variant: str | None = None) -> tuple[float, float, int, int]:
    """(share of wrong answers flagged, share of right answers passed, n wrong, n right) at `threshold`: an answer
    is right when it is `ok` and every field is right and none is missing; flagged when not `ok` or its lowest
    field confidence is below the threshold."""
    flagged_wrong = passed_right = n_wrong = n_right = 0
    for r in runs:
        conf = r.result.confidence if variant is None else r.variants.get(variant, {})
        right = r.result.status is Status.OK and r.task.answer is not None and _all_right(r)
        flagged = r.result.status is not Status.OK or bool(conf and min(conf.values()) < threshold)
        if right:
            n_right += 1
            passed_right += not flagged
        else:
            n_wrong += 1
            flagged_wrong += flagged
    return (flagged_wrong / n_wrong if n_wrong else 1.0, passed_right / n_right if n_right else 0.0, n_wrong, n_right)


def _all_right(r: Run) -> bool:
    if r.task.answer is None:
        return False
    got, want = leaves(r.result.data), leaves(r.task.answer)
    return set(got) == set(want) and all(same(got[p], want[p]) for p in want)


def calibrated_threshold(runs: Sequence[Run], variant: str | None = None, flag_wrong: float = 0.9) -> float | None:
    """The threshold that passes the most right answers while flagging >= `flag_wrong` of the wrong ones."""
    values = sorted(
        {v for r in runs for v in (r.result.confidence if variant is None else r.variants.get(variant, {})).values()}
    )
    best: tuple[float, float] | None = None
    for t in [0.0, *(v + 1e-9 for v in values)]:
        flagged, passed, _, _ = review(runs, t, variant)
        if flagged >= flag_wrong and (best is None or passed > best[1]):
            best = (t, passed)
    return None if best is None else round(best[0], 6)


def score(runs: Sequence[Run], elapsed_s: float) -> dict[str, Any]:
    """The configuration's numbers."""
    ordinary = [r for r in runs if r.task.answer is not None]
    refusals = [r for r in runs if r.task.answer is None]
    statuses = {s.value: sum(r.result.status is s for r in ordinary) for s in Status}
    marks = [
        (r, p, ok)
        for r in ordinary
        if r.result.data is not None
        for p, ok in field_marks(r.task, r.result.data).items()
    ]
    total_fields = sum(len(leaves(r.task.answer)) for r in ordinary)
    right_fields = sum(ok for _, _, ok in marks)
    valid = sum(r.result.status is Status.OK and not validation_errors(r.task.schema, r.result.data) for r in ordinary)
    # a runaway reaches the user as `truncated`; a loop caught and retried cleanly is counted apart
    runaways = statuses["truncated"]
    loops_retried = sum(any("ran away" in (a.get("error") or "") for a in r.attempts) for r in ordinary)
    tokens = sum(r.result.tokens.completion for r in runs)
    decode_s = sum(r.result.timings.decode_ms for r in runs) / 1000
    confidence: dict[str, Any] = {}
    for name in [None, *CONFIDENCES]:
        scores = [(r.result.confidence if name is None else r.variants.get(name, {})).get(p, 0.0) for r, p, _ in marks]
        labels = [ok for _, _, ok in marks]
        t = calibrated_threshold(ordinary, name)
        confidence[name or "reported"] = {
            "auroc": _round(auroc(scores, labels)),
            "ece": _round(ece(scores, labels)),
            "calibrated_threshold": t,
            "at_calibrated": _review_dict(review(ordinary, t, name)) if t is not None else None,
            "at_default": _review_dict(review(ordinary, TaskOptions().review_threshold, name)),
        }
    return {
        "tasks": len(ordinary),
        "statuses": statuses,
        "runaways": runaways,
        "loops_retried": loops_retried,
        "schema_valid_ok": valid,
        "fields_right": right_fields,
        "fields_total": total_fields,
        "field_accuracy": _round(right_fields / total_fields),
        "answers_fully_right": sum(r.result.status is Status.OK and _all_right(r) for r in ordinary),
        "refusal_tasks": len(refusals),
        "refused_when_told": sum(r.result.status is Status.REFUSED for r in refusals),
        "refused_ordinary": statuses["refused"],
        "confidence": confidence,
        "completion_tokens": tokens,
        "decode_s": round(decode_s, 2),
        "tokens_per_s": round(tokens / decode_s, 2),
        "wall_s": round(elapsed_s, 1),
    }


def _review_dict(r: tuple[float, float, int, int]) -> dict[str, Any]:
    return {"wrong_flagged": round(r[0], 3), "right_passed": round(r[1], 3), "wrong": r[2], "right": r[3]}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def run_config(engine: Engine, recording: Recording, options: dict[str, Any], tasks: Sequence[RealTask]) -> list[Run]:
    """Every task under one configuration."""
    runs = []
    for t in tasks:
        task = task_from_dict(
            {"instructions": t.instructions, "schema": t.schema, "options": {**options, "max_tokens": MAX_TOKENS}},
            t.id,
            t.id,
        )
        attempts: list[dict[str, Any]] = []
        result = engine.analyze(AnalyzeRequest((), task), on_event=lambda kind, e, seen=attempts: seen.append(e))
        run = Run(t, result, attempts)
        gen = recording.last
        if result.data is not None and gen is not None:
            raw = gen.text.encode()
            lead = len(raw) - len(raw.lstrip())
            spans = leaf_spans(raw[lead:].rstrip(), offset=lead)
            run.variants = {name: f(gen.steps, spans) for name, f in CONFIDENCES.items()}
        runs.append(run)
    return runs


def llama_json_path(gguf: Path, prompts: Sequence[str], tasks: Sequence[RealTask]) -> dict[str, Any]:
    """The same prompts through llama-cpp-python's JSON-schema grammar (json_schema_to_gbnf), greedy."""
    import llama_cpp
    from llama_cpp import LlamaGrammar
    from llama_cpp._utils import suppress_stdout_stderr
    from loupe.backends.llama_cpu import load_llama, plan

    with suppress_stdout_stderr():
        llm = load_llama(plan(), model_path=str(gguf), n_ctx=2048, n_threads=2, verbose=False)
    parsed = valid = right = tokens = grammar_failed = 0
    total = sum(len(leaves(t.answer)) for t in tasks if t.answer is not None)
    decode_s = 0.0
    for prompt, t in zip(prompts, tasks, strict=True):
        if t.answer is None:
            continue
        with suppress_stdout_stderr():
            grammar = LlamaGrammar.from_json_schema(json.dumps(t.schema), verbose=False)
            # its converter can write GBNF that llama.cpp cannot parse (\d in a pattern); sampling with it would
            # crash (a NULL sampler), so parse it first
            probe = llama_cpp.llama_sampler_init_grammar(
                llm._model.vocab, grammar._grammar.encode(), grammar._root.encode()
            )
        if not probe:
            grammar_failed += 1
            continue
        llama_cpp.llama_sampler_free(probe)
        llm.reset()  # no prompt reuse between tasks (Loupe's worker keeps none across different tasks either)
        llama_cpp.llama_perf_context_reset(llm.ctx)
        t0 = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=MAX_TOKENS, temperature=0.0, grammar=grammar)
        elapsed = time.perf_counter() - t0
        prefill_s = llama_cpp.llama_perf_context(llm.ctx).t_p_eval_ms / 1000
        usage = out["usage"]
        tokens += usage["completion_tokens"]
        decode_s += elapsed - prefill_s  # sampling under its grammar included, as Loupe's decode_ms includes masks
        try:
            data = json.loads(out["choices"][0]["text"])
        except ValueError:
            continue
        parsed += 1
        if not validation_errors(t.schema, data):
            valid += 1
        right += sum(field_marks(t, data).values())
    llm.close()
    n = sum(t.answer is not None for t in tasks)
    return {
        "tasks": n,
        "grammar_failed": grammar_failed,
        "parsed": parsed,
        "schema_valid": valid,
        "fields_right": right,
        "fields_total": total,
        "field_accuracy": _round(right / total),
        "completion_tokens": tokens,
        "decode_s": round(decode_s, 2),
        "tokens_per_s": round(tokens / decode_s, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_text", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, of: " + ", ".join(CONFIGS))
    parser.add_argument("--limit", type=int, default=0, help="only the first N tasks (0: all)")
    parser.add_argument("--no-llama-json", action="store_true", help="skip llama-cpp-python's JSON path")
    args = parser.parse_args(argv)
    tasks = TASKS[: args.limit] if args.limit else TASKS
    gguf, mmproj = real_gemma3_270m(Path(os.environ.get("LOUPE_BENCH_MODELS") or DEFAULT_DIR) / "gemma3-270m-real")
    backend = WorkerBackend(gguf, mmproj, n_threads=2)
    recording = Recording(backend)
    engine = Engine(recording, model="gemma3-270m")  # type: ignore[arg-type]
    report: dict[str, Any] = {"model": gguf.name, "max_tokens": MAX_TOKENS, "configs": {}}
    try:
        for name in args.configs.split(","):
            t0 = time.perf_counter()
            runs = run_config(engine, recording, CONFIGS[name], tasks)
            report["configs"][name] = score(runs, time.perf_counter() - t0)
            report["configs"][name]["outputs"] = {r.task.id: [r.result.status.value, r.result.raw[:160]] for r in runs}
            print(name, json.dumps({k: v for k, v in report["configs"][name].items() if k != "outputs"}), flush=True)
            if args.json:  # after each configuration: a long run that is stopped keeps what it measured
                args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    finally:
        engine.close()
    if not args.no_llama_json:
        from loupe.backends.chat_template import load_chat_template, render_prompt, template_source
        from loupe.core.prompt import user_text
        from loupe.models.chat_templates import BY_PROJECTOR

        source, _ = template_source(None, gguf, "gemma3")
        template = load_chat_template(source or BY_PROJECTOR["gemma3"], gguf)
        prompts = [render_prompt(template, user_text(t.instructions, t.schema, 0), "") for t in tasks]
        report["llama_cpp_python_json"] = llama_json_path(gguf, prompts, tasks)
        print("llama-cpp-python JSON path", json.dumps(report["llama_cpp_python_json"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
