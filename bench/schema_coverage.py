"""How faithfully each constraint engine enforces real-world JSON Schemas, and at what cost per token.

    python -m bench.schema_coverage PATH... [--engine llguidance|gbnf] [--vocab GGUF] [--json OUT]

PATH is a MaskBench `.jsonl.gz` file or a folder of JSON Schema Test Suite `.json` files. Each
instance is serialized in the decoder's JSON layout, tokenised with the vocabulary, and fed token by token: a
valid instance must be accepted at every token and at the end; an invalid one must be rejected by the
grammar or, where the grammar does not express a keyword, by Loupe's post-decoding validation.
Schemas run in worker processes with a time limit, so a hang or a crash in an engine is a counted
failure, not the end of the run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_TIMEOUT_S = 30.0
GBNF_MASK_SAMPLE = 16  # gbnf: time the full-vocabulary mask on every Nth step (it costs ms per step)


@dataclass
class Case:
    """One schema and its test instances."""

    split: str
    id: str
    schema: Any
    tests: list[dict[str, Any]]
    formats: str = "assertion"  # the task option `format` the case runs under (suite_format_mode)


@dataclass
class Outcome:
    """What one schema amounted to."""

    split: str
    id: str
    with_tests: bool
    compiled: bool = False
    relaxed: bool = False
    passing: bool = False
    valid_rejected: int = 0
    invalid_accepted_grammar: int = 0
    invalid_reaching_user: int = 0
    caught_after_decoding: int = 0
    timeout: bool = False
    crashed: bool = False
    compile_ms: float = 0.0
    mask_us: list[float] = field(default_factory=list)
    error: str = ""


# -- input -----------------------------------------------------------------------------------------
def suite_format_mode(relative: Path) -> str:
    """The `format` semantics the JSON Schema Test Suite specifies for one of its files: its required `format.json`
    tests format as an annotation (draft 2020-12's default); everything under optional/ (optional/format/*,
    format-assertion.json) as an assertion, which is Loupe's default."""
    return "annotation" if relative.parts == ("format.json",) else "assertion"


def load_cases(path: Path) -> Iterator[Case]:
    """MaskBench lines (`.jsonl.gz` / `.jsonl`) or a folder of test-suite files."""
    if path.is_dir():
        for f in sorted(path.rglob("*.json")):
            rel = f.relative_to(path).with_suffix("").as_posix()  # optional/format/ecmascript-regex: unique
            mode = suite_format_mode(f.relative_to(path))
            for i, group in enumerate(json.loads(f.read_text())):
                yield Case(f"test-suite/{rel}", f"{rel}#{i}", group["schema"], group.get("tests", []), mode)
        return
    opener = gzip.open if path.suffix == ".gz" else open
    split = path.name.split(".")[0]
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            yield Case(split, row.get("id", ""), row["schema"], row.get("tests") or [])


# -- vocabulary and engines ------------------------------------------------------------------------
class Vocab:
    """A llama.cpp vocabulary loaded from a GGUF (vocab only, no weights)."""

    def __init__(self, gguf: Path) -> None:
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.eos = [t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)]

    def tokenize(self, text: str) -> list[int]:
        """Plain-text tokenisation (no BOS, no special tokens)."""
        return self.llm.tokenize(text.encode(), add_bos=False, special=False)


def make_compiler(engine: str, vocab: Vocab) -> Any:
    """The product's compiler for `engine`, bound to `vocab`."""
    if engine == "gbnf":
        from loupe.core.constrain.gbnf import GbnfCompiler

        return GbnfCompiler(vocab.vocab, vocab.eos)
    from llguidance.llamacpp import lltokenizer_from_vocab
    from loupe.core.constrain.llguidance import LLGuidanceCompiler

    tok = lltokenizer_from_vocab(vocab.vocab, n_vocab=vocab.n_vocab, eos_token=vocab.eos)
    return LLGuidanceCompiler(tok)


# -- judging one schema ----------------------------------------------------------------------------
def feed(matcher: Any, tokens: list[int], n_vocab: int, time_every: int) -> tuple[bool, list[float]]:
    """Feed tokens one by one; (accepted, mask times in µs). Checks the token against the mask."""
    from loupe.core.constrain.base import mask_words

    mask = np.zeros(mask_words(n_vocab), dtype=np.int32)
    times: list[float] = []
    for i, tok in enumerate(tokens):
        if i % time_every == 0:
            t0 = time.perf_counter()
            matcher.fill_mask(mask)
            times.append((time.perf_counter() - t0) * 1e6)
            if not (int(mask[tok >> 5]) >> (tok & 31)) & 1:
                return False, times
        if not matcher.consume(tok):
            return False, times
    return matcher.is_accepting(), times


def judge(case: Case, engine: str, compiler: Any, vocab: Vocab, validate: Any = None) -> Outcome:
    """Compile, then run every instance through the grammar and post-validation.

    Post-validation may only make up for what the engine *declared* it left out (`constraint.relaxed`):
    an engine that compiled a schema strictly and still lets an invalid instance through fails it,
    even though Loupe's validator would catch the instance later.
    """
    from loupe.core.constrain.base import DEFAULT_LAYOUT, LAYOUTS
    from loupe.core.errors import ConstraintError
    from loupe.core.schema.formats import with_formats
    from loupe.core.schema.validate import validation_errors

    from bench.canonical import canonical

    validate = validate or functools.partial(validation_errors, formats=case.formats)
    from loupe.core.schema.validate import schema_problem

    out = Outcome(case.split, case.id, with_tests=bool(case.tests))
    refused = schema_problem(case.schema)  # what Loupe refuses when a task loads (e.g. remote $ref)
    if refused:
        out.error = f"refused at task load: {refused[0]} at {refused[1] or '/'}"[:300]
        return out
    t0 = time.perf_counter()
    try:
        constraint = compiler.compile(with_formats(case.schema, case.formats), allow_refusal=False)
    except ConstraintError as exc:
        out.compile_ms = (time.perf_counter() - t0) * 1000
        out.error = str(exc)[:300]
        return out
    out.compile_ms = (time.perf_counter() - t0) * 1000
    out.compiled = True
    out.relaxed = bool(getattr(constraint, "relaxed", ()))
    time_every = GBNF_MASK_SAMPLE if engine == "gbnf" else 1
    for test in case.tests:
        data = canonical(test["data"], case.schema) if test["valid"] else test["data"]
        text = json.dumps(data, separators=LAYOUTS[DEFAULT_LAYOUT], ensure_ascii=False)
        accepted, times = feed(constraint.matcher(), vocab.tokenize(text), vocab.n_vocab, time_every)
        out.mask_us.extend(times)
        try:
            post_ok = not validate(case.schema, test["data"])
        except Exception as exc:  # a validator failure is a failure of this schema, not of the run
            out.error, post_ok = f"validation raised {type(exc).__name__}: {exc}"[:300], False
        if test["valid"]:
            out.valid_rejected += not (accepted and post_ok)
        elif accepted:
            out.invalid_accepted_grammar += 1
            out.caught_after_decoding += not post_ok
            out.invalid_reaching_user += post_ok
    undeclared = out.invalid_accepted_grammar and not out.relaxed
    out.passing = out.with_tests and not (out.valid_rejected or out.invalid_reaching_user or undeclared)
    return out


# -- worker processes with a time limit ------------------------------------------------------------
def _worker(conn: Any, engine: str, gguf: str) -> None:
    vocab = Vocab(Path(gguf))
    compiler = make_compiler(engine, vocab)
    conn.send("ready")
    while True:
        case = conn.recv()
        if case is None:
            return
        conn.send(judge(case, engine, compiler, vocab))


class Pool:
    """N worker processes; a case past the time limit or killing its worker becomes a failure."""

    def __init__(self, n: int, engine: str, gguf: Path, timeout_s: float) -> None:
        self.ctx = mp.get_context("spawn")
        self.engine, self.gguf, self.timeout_s = engine, str(gguf), timeout_s
        self.workers = [self._start() for _ in range(n)]

    def _start(self) -> tuple[Any, Any]:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, self.engine, self.gguf), daemon=True)
        proc.start()
        if not parent.poll(300) or parent.recv() != "ready":
            raise RuntimeError("benchmark worker failed to start")
        return proc, parent

    def run(self, cases: list[Case], progress: bool) -> Iterator[Outcome]:
        """Results in completion order."""
        todo = list(reversed(cases))
        busy: dict[int, tuple[Case, float]] = {}
        done = 0
        while todo or busy:
            for i, (_proc, conn) in enumerate(self.workers):
                if i not in busy and todo:
                    case = todo.pop()
                    conn.send(case)
                    busy[i] = (case, time.monotonic())
            for i in list(busy):
                proc, conn = self.workers[i]
                case, started = busy[i]
                result: Outcome | None = None
                if conn.poll(0.002):
                    try:
                        result = conn.recv()
                    except EOFError:
                        result = Outcome(case.split, case.id, bool(case.tests), crashed=True, error="worker died")
                elif not proc.is_alive():
                    result = Outcome(case.split, case.id, bool(case.tests), crashed=True, error="worker crashed")
                elif time.monotonic() - started > self.timeout_s:
                    result = Outcome(case.split, case.id, bool(case.tests), timeout=True, error="time limit")
                if result is None:
                    continue
                if result.crashed or result.timeout:
                    proc.kill()
                    proc.join()
                    self.workers[i] = self._start()
                del busy[i]
                done += 1
                if progress and done % 200 == 0:
                    print(f"  {done}/{len(cases)}", file=sys.stderr, flush=True)
                yield result

    def close(self) -> None:
        """Stop every worker."""
        for proc, conn in self.workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)
            proc.join(5)
            if proc.is_alive():
                proc.kill()


# -- report ----------------------------------------------------------------------------------------
def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    """The numbers the issue asks for, over a group of outcomes."""
    compile_ms = np.array([o.compile_ms for o in outcomes if o.compiled] or [0.0])
    mask = np.array([t for o in outcomes for t in o.mask_us] or [0.0])
    with_tests = [o for o in outcomes if o.with_tests]
    return {
        "schemas": len(outcomes),
        "with_tests": len(with_tests),
        "compiled": sum(o.compiled for o in outcomes),
        "relaxed": sum(o.relaxed for o in outcomes),
        "passing": sum(o.passing for o in with_tests),
        "passing_pct": round(100 * sum(o.passing for o in with_tests) / max(1, len(with_tests)), 2),
        "valid_rejected": sum(o.valid_rejected for o in outcomes),
        "invalid_accepted_grammar": sum(o.invalid_accepted_grammar for o in outcomes),
        "caught_after_decoding": sum(o.caught_after_decoding for o in outcomes),
        "invalid_reaching_user": sum(o.invalid_reaching_user for o in outcomes),
        "timeouts": sum(o.timeout for o in outcomes),
        "crashes": sum(o.crashed for o in outcomes),
        "compile_ms_p50": round(float(np.percentile(compile_ms, 50)), 3),
        "compile_ms_p99": round(float(np.percentile(compile_ms, 99)), 3),
        "compile_ms_max": round(float(compile_ms.max()), 3),
        "mask_us_avg": round(float(mask.mean()), 2),
        "mask_us_p99": round(float(np.percentile(mask, 99)), 2),
        "mask_us_max": round(float(mask.max()), 2),
    }


COLUMNS = [
    ("schemas", 7),
    ("with_tests", 6),
    ("compiled", 8),
    ("relaxed", 7),
    ("passing", 7),
    ("passing_pct", 6),
    ("valid_rejected", 6),
    ("invalid_accepted_grammar", 7),
    ("invalid_reaching_user", 7),
    ("timeouts", 4),
    ("crashes", 5),
    ("compile_ms_p99", 8),
    ("mask_us_avg", 8),
    ("mask_us_p99", 8),
    ("mask_us_max", 9),
]
HEADERS = [
    "schemas",
    "tests",
    "compiled",
    "relaxed",
    "passing",
    "pass%",
    "v.rej",
    "inv.acc",
    "to.user",
    "t/o",
    "crash",
    "cmp p99",
    "mask avg",
    "mask p99",
    "mask max",
]


def table(report: dict[str, Any], engine: str) -> str:
    """A plain-text table: one row per split, then overall."""
    rows = [*sorted(report["splits"].items()), ("OVERALL", report["overall"])]
    width = max(len(name) for name, _ in rows)  # split names whole (test-suite/optional/format/...)
    lines = [
        f"engine: {engine}   (compile in ms, mask in µs per token)",
        f"{'split':{width}}" + "".join(f"{h:>{w + 1}}" for h, (_, w) in zip(HEADERS, COLUMNS, strict=True)),
    ]
    for name, numbers in rows:
        lines.append(f"{name:{width}}" + "".join(f"{numbers[k]:>{w + 1}}" for k, w in COLUMNS))
    return "\n".join(lines)


def default_vocab() -> Path:
    """The synthetic SmolVLM vocabulary (49,280 tokens), built once into the user cache."""
    from loupe.models.synthetic import build
    from platformdirs import user_cache_dir

    return build("vocab-smolvlm", Path(user_cache_dir("loupe")) / "bench").text_path


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.schema_coverage", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--engine", choices=["llguidance", "gbnf"], default="llguidance")
    p.add_argument("--vocab", type=Path, help="GGUF whose vocabulary to use (default: synthetic SmolVLM, 49,280)")
    p.add_argument("--json", type=Path, help="write the numbers here")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per schema")
    p.add_argument("--limit", type=int, default=0, help="first N schemas of each path (0: all)")
    p.add_argument("--failures", type=Path, help="write one JSON line per failing schema here")
    args = p.parse_args(argv)
    cases: list[Case] = []
    for path in args.paths:
        batch = list(load_cases(path))
        cases += batch[: args.limit] if args.limit else batch
    gguf = args.vocab or default_vocab()
    t0 = time.time()
    pool = Pool(args.workers, args.engine, gguf, args.timeout)
    try:
        outcomes = list(pool.run(cases, progress=True))
    finally:
        pool.close()
    splits: dict[str, list[Outcome]] = {}
    for o in outcomes:
        splits.setdefault(o.split, []).append(o)
    report = {
        "engine": args.engine,
        "vocab": str(gguf),
        "seconds": round(time.time() - t0, 1),
        "overall": summarize(outcomes),
        "splits": {k: summarize(v) for k, v in splits.items()},
    }
    print(table(report, args.engine))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.failures:
        with args.failures.open("w") as fh:
            for o in outcomes:
                if o.with_tests and not o.passing:
                    row = asdict(o)
                    row.pop("mask_us")
                    fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
