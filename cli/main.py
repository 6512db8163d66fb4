"""The `loupe` command's parser and dispatch table: each verb group's module registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from loupe.cli import analyze, gui
from loupe.cli import eval as cli_eval
from loupe.cli.common import examples, model_args, preflight
from loupe.cli.serve import cmd_serve
from loupe.core.errors import LoupeError


def cmd_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to the models command set."""
    from loupe.cli.models import run_models

    return run_models(args, out, err)


def cmd_store(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to the results-store command set (batch, review, export)."""
    from loupe.cli.store import run_store

    return run_store(args, out, err)


def cmd_hybrid(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to the hybrid-mode commands (audit, cloud)."""
    from loupe.cli.hybrid import run_hybrid

    return run_hybrid(args, out, err)


def cmd_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to `loupe doctor` (llama.cpp's CPU features and weight buffers here)."""
    from loupe.cli.doctor import run_doctor

    return run_doctor(args, out, err)


def cmd_floor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to the factory-floor commands (watch, kiosk, outbox)."""
    from loupe.cli.floor import run_floor

    return run_floor(args, out, err)


def cmd_search(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to `loupe search` / `loupe index` (find stored results again)."""
    from loupe.cli.search import run_search

    return run_search(args, out, err)


def cmd_import(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delegate to `loupe import` (a cluster run's --out folder into the results store)."""
    from loupe.cli.importer import run_import

    return run_import(args, out, err)


COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "analyze": analyze.cmd_analyze,
    "demo": analyze.cmd_demo,
    "tasks": analyze.cmd_tasks,
    "models": cmd_models,
    "batch": cmd_store,
    "review": cmd_store,
    "export": cmd_store,
    "import": cmd_import,
    "audit": cmd_hybrid,
    "cloud": cmd_hybrid,
    **dict.fromkeys(("watch", "kiosk", "outbox"), cmd_floor),
    "eval": cli_eval.run_eval,
    "gui": gui.run_gui,
    "serve": cmd_serve,
    "doctor": cmd_doctor,
    "search": cmd_search,
    "index": cmd_search,
}


def parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    p = examples(
        argparse.ArgumentParser(prog="loupe", description="Images in, schema-valid JSON out, on your machine."),
        "loupe demo                                  # the main job on a bundled sample image",
        "loupe analyze photo.jpg --out results.jsonl",
        "loupe batch photos/ && loupe review list && loupe export --out results.csv",
        "loupe COMMAND --help                        # each command's options and examples",
    )
    p.add_argument("--version", action="version", version=f"loupe {importlib.metadata.version('loupe')}")
    sub = p.add_subparsers(dest="command", required=True)

    analyze.add_parsers(sub)
    from loupe.cli.models import add_parsers as add_model_parsers

    add_model_parsers(sub)
    from loupe.cli.store import add_parsers

    add_parsers(sub, model_args)
    from loupe.cli.importer import add_parsers as add_import_parsers

    add_import_parsers(sub)
    from loupe.cli.hybrid import add_parsers as add_hybrid_parsers

    add_hybrid_parsers(sub)
    from loupe.cli.floor import add_parsers as add_floor_parsers

    add_floor_parsers(sub, model_args)
    cli_eval.add_parsers(sub)
    gui.add_parsers(sub)
    from loupe.cli.serve import add_parsers as add_serve_parsers

    add_serve_parsers(sub, model_args)
    from loupe.cli.doctor import add_parsers as add_doctor_parsers

    add_doctor_parsers(sub)
    from loupe.cli.search import add_parsers as add_search_parsers

    add_search_parsers(sub)
    return p


DEBUG_ENV = "LOUPE_DEBUG"


def leaf(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)command parser that `args` came through: `loupe review list` -> review's `list` parser."""
    while True:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if name is None:
            return p
        p = subs[0].choices[name]


def one_line(exc: BaseException) -> str:
    """An exception as one line: an OSError names its file and the system's reason."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of the `loupe` console script; returns the exit code. Every failure is one line on stderr (exit
    2: the command could not do what was asked; 1: an internal error); $LOUPE_DEBUG=1 shows the traceback too."""
    out = out or sys.stdout
    err = err or sys.stderr
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra:  # rejected by the command's own parser, with its own usage
        leaf(p, args).error(f"unrecognized arguments: {' '.join(extra)}")
    from loupe.models.store import ModelError

    code, problem = 2, None
    try:
        preflight(args)
        return COMMANDS[args.command](args, out, err)
    except (LoupeError, ModelError) as exc:
        problem = exc
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130
    except BrokenPipeError:  # `loupe ... | head`: the reader has gone; nothing to say
        if out is sys.stdout:  # no second error when Python flushes stdout at exit (the `signal` docs' recipe)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # the file system said no (a full disk, a permission): the user can act on it
        if os.environ.get(DEBUG_ENV):
            raise
        problem = exc
    except Exception as exc:  # a bug: one line, and how to see more
        if os.environ.get(DEBUG_ENV):
            raise
        code, problem = 1, exc
    text = one_line(problem)
    if getattr(args, "json", False):
        out.write(json.dumps({"error": text, "kind": type(problem).__name__}) + "\n")
    if code == 1:
        text = f"internal error ({type(problem).__name__}): {text} (run with {DEBUG_ENV}=1 for the traceback)"
    print(f"error: {text}", file=err)
    return code
